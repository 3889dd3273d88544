"""The Python API. The CLI is a thin layer over it; notebooks use it directly::

    import raysweep
    run = raysweep.open("digits_mlp")          # or a path to your own TOML, storage="s3://..."
    run.run()                                    # train -> sweep -> aggregate -> report
    run.curves.filter(pl.col("sweep") == "init_to_final").collect()
    run.query("select step, max(max_increase_mean) from barriers group by step")
    raysweep.open("interpolate/3f2a9c01bd")      # a stored run by the id `raysweep runs` lists

The run's flow lives in ``raysweep.run`` (this module opens runs and names the API's errors).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from raysweep.errors import (  # noqa: F401
    DamagedPoints,
    MissingResults,
    RunNotFound,
    SpecError,
    SweepFailed,
    TrainingFailed,
    in_python,
)
from raysweep.io import paths
from raysweep.io.runs import list_runs  # noqa: F401  (the API's listing of stored runs)
from raysweep.io.store import Store
from raysweep.jobs import load_job
from raysweep.plugins import load_plugins
from raysweep.run.core import Run
from raysweep.spec import Job, parse_stored
from raysweep.sweep.rounds import RunSummary, failure_message  # noqa: F401
from raysweep.validate import complete

RUN_ID = re.compile(r"(?P<job>[A-Za-z0-9][A-Za-z0-9_-]{0,99})/(?P<hash>[0-9a-f]{10})")


def is_run_id(text: str) -> bool:
    """"job/hash" as `raysweep runs` lists it (and not a file that happens to look like one)."""
    return bool(RUN_ID.fullmatch(text)) and not Path(text).exists()


def open(job: str | Job, storage: str | None = None, overrides: Iterable[str] = (),
         replicates: int | None = None, shared_storage: bool = False) -> Run:
    """The run of `job` (a built-in name, a TOML path, a Job, or a stored run's id "job/hash") in `storage`
    (default: $RAYSWEEP_STORAGE, else ./raysweep-results of the working directory). Errors, here and from the
    Run's tables, name this function's arguments (storage=, overrides=[...], replicates=).

    `shared_storage=True` (or $RAYSWEEP_SHARED_STORAGE=1) says a local storage path is a filesystem
    mounted on every node of a multi-node cluster (NFS, FSx, ...)."""
    try:
        return open_run(job, storage, overrides, replicates, shared_storage, python=True)
    except SpecError as exc:
        raise type(exc)(in_python(str(exc))) from None


def open_run(job: str | Job, storage: str | None = None, overrides: Iterable[str] = (),
             replicates: int | None = None, shared_storage: bool = False, python: bool = False) -> Run:
    """`open`, for the command line (`python`: errors in the Python API's words)."""
    store = Store(storage)
    if isinstance(job, str) and is_run_id(job):
        if list(overrides):
            raise SpecError(f"{job!r} is a stored run's id: its settings are stored with it (its hash), so --set "
                            f"does not apply; give the job's name or file to change settings (--replicates does "
                            f"apply: the replicates are not in the hash)")
        stored = stored_job(store, job)
        load_plugins(stored.plugins)  # its kinds' code: a stored run of a plugin kind reads and draws with it
        if replicates is not None and replicates != stored.replicates:
            import dataclasses

            stored = dataclasses.replace(stored, replicates=replicates)
            if stored.problems():
                raise SpecError(f"--replicates {replicates}: {'; '.join(stored.problems())}")
            stored = complete(stored)
        return Run(stored, store, shared_storage, python)
    if not isinstance(job, Job):
        job = load_job(job, overrides, replicates)
    return Run(job, store, shared_storage, python)


def stored_job(store: Store, run_id: str) -> Job:
    """The job a stored run was made with (its job.json), checked to be the run's own."""
    name, want = run_id.split("/")
    spec_file = paths.job_json(paths.run_dir(name, want))
    if not store.exists(spec_file):
        store.check(write=False)
        runs = [f"{r['job']}/{r['hash']}" for r in list_runs(store)]
        raise RunNotFound(f"no run {run_id} is stored in {store.url('')} (or it has no job.json yet); stored runs: "
                          f"{', '.join(runs[:20]) or 'none'} (`raysweep runs --storage {store.url('')}`).")
    try:
        job = parse_stored(store.read_json(spec_file), f"{store.url(spec_file)}")
    except ValueError as exc:
        raise SpecError(f"{store.url(spec_file)} cannot be read as a job ({exc}); open the run by its job file "
                        f"and --set overrides instead") from None
    if not job.digests:  # written before digests were stored: computed from the code and files now

        job = complete(job)
    if job.hash != want:
        raise SpecError(f"{store.url(spec_file)} describes a run with hash {job.hash}, not {want}: the user code or "
                        f"external checkpoints it names changed since. Open it with the job file as it was.")
    return job
