"""The planner: every work item of a job's sweeps, from what is stored. Pure: it reads manifests
and prepared files' records, and writes nothing (``prep.prepare`` writes what items reference).
Each kind's items come from the builder its record names (``work/kinds.py``)."""
from __future__ import annotations

import math

import polars as pl

from raysweep.analysis.scan import scan, sweep_files
from raysweep.errors import NotTrainedError, SpecError
from raysweep.io import paths
from raysweep.io.manifests import read_manifests
from raysweep.io.runs import locator
from raysweep.io.schemas import POINT_SCHEMA
from raysweep.io.store import Store
from raysweep.spec import TRAIN_SUBSET, Job, SweepSpec, sharpness_hash, sweep_hash
from raysweep.sweep.refine import barrier_peak
from raysweep.work.items import (
    ITEM_FLOP,
    RANDOM_STEP,
    Endpoint,
    LineItem,
    PlaneItem,
    SharpnessItem,
    TrajectoryItem,
    check_size,
    chunk_size,
    chunks,
    grid_key,
    line_key,
    sharpness_key,
    trajectory_key,
)
from raysweep.work.kinds import KINDS, sharpness_folder, sweep_folder
from raysweep.work.stored import done_items, stored_ref
from raysweep.work.tasks import Child


def random_endpoint(store: Store, job: Job, k: int, scale: float) -> Endpoint:
    """θ_r of replicate k as the planner sees it: its path, and its sha256 once drawn ("" before)."""
    ref = stored_ref(store, paths.random_point(paths.run_dir(job.name, job.hash), k, scale))
    return Endpoint(k, RANDOM_STEP, ref.path, ref.sha256)


class Context:
    """What every builder reads: the job, the store, each replicate's checked manifests, the data's size."""

    def __init__(self, job: Job, store: Store, replicates: list[int], info):
        self.job, self.store, self.info = job, store, info
        self.run = paths.run_dir(job.name, job.hash)
        self.manifests = {k: read_manifests(store, job, k) for k in replicates}
        self.finals = {k: self.endpoint(k, max(m)) for k, m in self.manifests.items()}

    def endpoint(self, k: int, step: int) -> Endpoint:
        m = self.manifests[k][step]
        return Endpoint(k, step, m["path"], m["sha256"])

    def trajectory(self, k: int) -> tuple[Endpoint, ...]:
        return tuple(self.endpoint(k, s) for s in sorted(self.manifests[k]))


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
            items += KINDS[sweep.kind].build()(ctx, sweep, items)
            check_size(items, job)
    return items


def pairs(ctx: Context, sweep: SweepSpec) -> list[tuple[Endpoint, Endpoint]]:
    """(θ_a, θ_b) pairs of a line sweep, in an order that keeps each θ_b's work together."""
    ks, finals = sorted(ctx.finals), ctx.finals
    if sweep.kind == "init_to_final":
        return [(ctx.endpoint(k, 0), finals[k]) for k in ks]
    if sweep.kind == "step_to_final":
        return [(ctx.endpoint(k, s), finals[k]) for k in ks for s in sorted(ctx.manifests[k])]
    if sweep.kind == "final_to_final":
        return [(finals[i], finals[j]) for i in ks for j in ks if i < j]
    if sweep.kind == "random_to_final":
        return [(random_endpoint(ctx.store, ctx.job, k, sweep.random_scale), finals[k]) for k in ks]
    if sweep.kind == "instability":
        children = spawned(ctx, sweep)
        return [(children[(k, s, 0)], children[(k, s, 1)]) for k in ks for s in sweep.spawn_steps]
    raise SpecError(f"{sweep.kind!r} is not a line sweep kind")


def line_items(ctx: Context, sweep: SweepSpec, before: list) -> list[LineItem]:
    """One item per (pair, α-chunk); the key names the α indices it holds, so a different chunking
    never skips an α."""
    if sweep.align != "none":
        check_alignable(ctx.job, sweep, ctx.info)
    size = chunk_size(ctx.job, sweep, ctx.info)
    grid = sweep.alpha.points()
    sweep_pairs = pairs(ctx, sweep)
    check_size(before, ctx.job, len(sweep_pairs) * math.ceil(len(grid) / size))
    h, folder = sweep_hash(sweep), sweep_folder(ctx.run, sweep)
    subset = tuple(sorted(sweep.params.selected(_state_names(ctx), f"sweeps.{sweep.name}.params"))) \
        if sweep.params.on else ()
    items = [LineItem(sweep.name, sweep.kind, h, key, paths.point_file(folder, key), a, b, tuple(alphas),
                      tuple(sweep.splits), sweep.bn, sweep.bn_batches, tuple(sweep.metrics), sweep.align, subset,
                      sweep.hold)
             for a, b in sweep_pairs for c, alphas in enumerate(chunks(grid, size))
             for key in [line_key(a, b, c * size, c * size + len(alphas))]]
    return items + (sharpness_items(ctx, sweep, sweep_pairs) if sweep.sharpness.on else [])


def _state_names(ctx: Context) -> list[str]:
    import torch

    from raysweep.models import build_model

    with torch.device("meta"):
        return list(build_model(ctx.job.model, tuple(ctx.info.in_shape), ctx.info.num_classes).state_dict())


def sharpness_items(ctx: Context, sweep: SweepSpec, sweep_pairs: list) -> list[SharpnessItem]:
    """One item per pair: the sharpness settings' α, and with at_peak the curve's barrier peak once the
    pair's line is stored on the whole grid (until then the item waits: `raysweep run` plans again)."""
    spec, split = sweep.sharpness, sweep.splits[0]
    peaks = _stored_peaks(ctx, sweep, split) if spec.at_peak else {}
    folder = sharpness_folder(ctx.run, sweep)
    out = []
    for a, b in sweep_pairs:
        alphas, flags = list(spec.alphas), [False] * len(spec.alphas)
        peak = peaks.get((a.replicate, a.step, b.replicate, b.step))
        if spec.at_peak and peak is None:  # the line is not stored yet: one item, once the peak is known
            continue
        if spec.at_peak:  # the peak marked, added if it is not among the α already
            flags = [f or x == peak for x, f in zip(alphas, flags)]
            if peak not in alphas:
                alphas, flags = alphas + [peak], flags + [True]
        if alphas:
            key = sharpness_key(a, b, alphas)
            out.append(SharpnessItem(sweep.name, sweep.kind, sharpness_hash(sweep), key, paths.point_file(folder, key),
                                     a, b, tuple(alphas), tuple(flags), split, spec.iterations, spec.probes,
                                     spec.examples, sweep.align, spec, sweep.bn_batches))
    return out


def _stored_peaks(ctx: Context, sweep: SweepSpec, split: str) -> dict:
    """(replicate_a, step_a, replicate_b, step_b) -> the barrier peak α of each curve stored on the whole grid."""
    grid = len(sweep.alpha.points())
    df = scan(ctx.store, sweep_files(ctx.store, ctx.job, sweep), POINT_SCHEMA).filter(pl.col("split") == split).select(
        "replicate_a", "step_a", "replicate_b", "step_b", "alpha", "loss").collect()
    out = {}
    for key, part in df.group_by(["replicate_a", "step_a", "replicate_b", "step_b"]):
        part = part.unique("alpha").sort("alpha")
        if part.height >= grid:
            out[tuple(int(k) for k in key)] = barrier_peak(part["alpha"].to_numpy(), part["loss"].to_numpy())
    return out


def trajectory_items(ctx: Context, sweep: SweepSpec, before: list) -> list[TrajectoryItem]:
    """One item per replicate: every checkpoint of its trajectory, in step order."""
    h, folder = sweep_hash(sweep), sweep_folder(ctx.run, sweep)
    return [TrajectoryItem(sweep.name, sweep.kind, h, trajectory_key(k), paths.point_file(folder, trajectory_key(k)),
                           ctx.trajectory(k), sweep.examples) for k in sorted(ctx.manifests)]


def plane_items(ctx: Context, sweep: SweepSpec, before: list) -> list[PlaneItem]:
    """Per replicate: rows of the (a, b) grid in chunks; the first chunk also projects the path. The
    plane's directions (T4/T5) or the path's projection (T3) are referenced, drawn later by `prepare`."""
    betas = tuple(sweep.beta.points())
    if sweep.chunk:
        size = sweep.chunk
    else:  # rows of the grid per item: ~ITEM_FLOP of work, like the line sweeps
        from raysweep.models import forward_flops  # torch

        per_row = forward_flops(ctx.job.model, tuple(ctx.info.in_shape), ctx.info.num_classes) * len(betas) * sum(
            sweep.split_sizes(ctx.info.sizes))
        size = max(1, min(len(sweep.alpha.points()), math.ceil(ITEM_FLOP / max(per_row, 1))))
    h, folder = sweep_hash(sweep), sweep_folder(ctx.run, sweep)
    t3, pca = sweep.kind == "path_surface", sweep.kind == "pca_plane"  # each item needs the whole trajectory
    out = []
    for k in sorted(ctx.manifests):
        eps = ctx.trajectory(k)
        ref = stored_ref(ctx.store, (paths.path_info if t3 else paths.plane)(ctx.run, k, sweep.name, h))
        for c, alphas in enumerate(chunks(sweep.alpha.points(), size)):
            key = grid_key(k, "path" if t3 else "plane", c * size, c * size + len(alphas))
            trajectory = eps if (c == 0 or t3 or pca) else ()
            out.append(PlaneItem(sweep.name, sweep.kind, h, key, paths.point_file(folder, key), k, tuple(alphas), betas,
                                 tuple(sweep.splits), c == 0, (eps[0], eps[-1]), trajectory, ref))
    return out


def check_spawn_steps(sweep, k: int, steps) -> None:
    """Children are spawned from stored checkpoints before the last one; say which exist if not."""
    bad = [s for s in sweep.spawn_steps if s not in steps or s == max(steps)]
    if bad:
        raise SpecError(f"sweeps.{sweep.name}.spawn_steps {bad} are not checkpoints of replicate {k} before its last "
                        f"step; spawn from the stored ones: {sorted(steps)[:-1]} (or add them to train.steps)")


def children_todo(job: Job, store: Store, trained: list[int]) -> list[Child]:
    """The instability children of the `trained` replicates not trained yet."""
    sweeps = [sw for sw in job.sweeps if sw.kind == "instability"]
    for k in trained if sweeps else []:
        for sw in sweeps:
            check_spawn_steps(sw, k, read_manifests(store, job, k))
    steps = sorted({s for sw in sweeps for s in sw.spawn_steps})
    return [task for k in trained for s in steps for c in (0, 1) if not (task := Child(k, s, c)).done(store, job)]


def spawned(ctx: Context, sweep) -> dict:
    """(replicate, spawn step, child) -> the trained child's final Endpoint; NotTrainedError naming
    what is missing (`raysweep run` trains them)."""
    out, missing_ = {}, []
    for k, steps in ctx.manifests.items():
        check_spawn_steps(sweep, k, steps)
        total = max(steps)
        for s in sweep.spawn_steps:
            for c in (0, 1):
                if not ctx.store.exists(paths.child_done(ctx.run, k, s, c)):
                    missing_.append((k, s, c))
                    continue
                m = ctx.store.read_json(paths.child_manifest(ctx.run, k, s, c, total))
                out[(k, s, c)] = Endpoint(k, s, paths.child_checkpoint(ctx.run, k, s, c, total), m["sha256"], c)
    if missing_:
        raise NotTrainedError(
            f"{len(missing_)} instability children of {ctx.job.name} are not trained yet (e.g. "
            f"replicate {missing_[0][0]}, spawned at step {missing_[0][1]}); `raysweep run "
            f"{locator(ctx.job, ctx.store)}` trains them"
        )
    return out


def check_alignable(job: Job, sweep, info) -> None:
    """A sweep that aligns units needs a chain model (evaluate/align.py); say so before any work."""
    import torch

    from raysweep.evaluate.align import AlignmentError, permutation_spec
    from raysweep.models import build_model

    with torch.device("meta"):
        model = build_model(job.model, tuple(info.in_shape), info.num_classes)
    try:
        permutation_spec(model, tuple(info.in_shape))
    except AlignmentError as exc:
        raise SpecError(f"sweeps.{sweep.name}: {exc}") from None


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
