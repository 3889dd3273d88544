"""The planner: every work item of a job's sweeps, from what is stored. Pure: it reads manifests
and prepared files' records, and writes nothing (``prep.prepare`` writes what items reference).
Each sweep's items come from its kind's `plan` (``work/kinds.py``'s registry; the kinds in ``raysweep/kinds/``)."""
from __future__ import annotations

from raysweep.errors import NotTrainedError, SpecError
from raysweep.io import paths
from raysweep.io.runs import locator
from raysweep.io.store import Store
from raysweep.kinds.base import Context
from raysweep.spec import TRAIN_SUBSET, Job
from raysweep.work.items import check_size
from raysweep.work.kinds import kind
from raysweep.work.stored import done_items


def plan(job: Job, store: Store, replicates: list[int], info=None, sweeps: list[str] | None = None) -> list:
    """Every work item of the job's sweeps (both done and missing). `info` is the dataset's shape and
    sizes as the workers see it (default: read here, or the dataset's standard sizes if absent)."""
    if info is None:
        from raysweep.data.registry import dataset_info  # torch

        info = dataset_info(job.data, standard_if_missing=True, store=store)
    run = paths.run_dir(job.name, job.hash)
    untrained = [k for k in replicates if not store.exists(paths.train_done(run, k))]
    if untrained:
        raise NotTrainedError(f"replicates {untrained} of {job.name} are not trained yet in {store.url(run)}; "
                              f"run `raysweep train {locator(job, store)}` (or `raysweep run`) first")
    ctx = Context(job, store, replicates, info)
    items: list = []
    for sweep in job.sweeps:
        if not sweeps or sweep.name in sweeps:
            unknown = [s for s in sweep.splits if s not in info.sizes and s != TRAIN_SUBSET]
            if unknown:
                raise SpecError(f"sweeps.{sweep.name}.splits {unknown}: the dataset {job.data.name!r} has the splits "
                                f"{list(info.sizes)}")
            items += kind(sweep.kind).plan(ctx, sweep, items)
            check_size(items, job)
    return items


def done_paths(store: Store, job: Job) -> set[str]:
    """Paths of the items whose points are stored: item files, and items inside compacted parts."""
    run = paths.run_dir(job.name, job.hash)
    folders: dict[str, list[str]] = {}
    for f in store.list(paths.points_dir(run), paths.PARQUET, recursive=True):
        folders.setdefault(f.rsplit("/", 1)[0], []).append(f)
    done: set[str] = set()
    for folder, files in folders.items():
        done |= done_items(store, folder, files)
    return done


def missing(items: list, store: Store, job: Job) -> list:
    done = done_paths(store, job)
    return [it for it in items if it.path not in done]
