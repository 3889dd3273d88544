"""What a run has done (`raysweep status`), and forgetting a replicate (`raysweep train --force`)."""
from __future__ import annotations

from raysweep.analysis.scan import damaged_files, point_paths
from raysweep.errors import NotTrainedError
from raysweep.io import paths
from raysweep.io.runs import is_trained
from raysweep.io.store import Store
from raysweep.spec import SWEEP_KINDS, Job
from raysweep.sweep.compact import drop_replicate
from raysweep.sweep.planner import done_paths
from raysweep.work.items import key_replicates


def status(run) -> dict:
    """Trained replicates, checkpoints, sweep items done/total per sweep, unreadable points files."""
    store, job = run.store, run.job
    store.check(write=False)  # a missing bucket or a dead endpoint: one message, not "not trained"
    out = {"run": store.url(run.dir), "replicates": {}, "damaged": []}
    for k in run.replicates:
        ck = [p for p in store.list(paths.replicate_dir(run.dir, k), paths.SAFETENSORS) if "/step_" in p]
        out["replicates"][k] = {"trained": is_trained(store, job, k), "checkpoints": len(ck)}
    try:
        items = run.plan()
    except NotTrainedError:
        out["sweeps"] = None
        return out
    damaged = set(damaged_files(store, point_paths(store, job, SWEEP_KINDS)))
    done = done_paths(store, job) - damaged
    out["damaged"] = sorted(damaged)
    out["sweeps"] = {s.name: {"done": sum(1 for i in items if i.sweep == s.name and i.path in done),
                              "total": sum(1 for i in items if i.sweep == s.name)} for s in job.sweeps}
    out["report"] = run.report_state()
    return out


def forget_replicate(job: Job, store: Store, k: int) -> None:
    """Delete replicate k's checkpoints, the curves' bends trained towards them and every stored point
    that used them."""
    run = paths.run_dir(job.name, job.hash)
    store.delete(paths.replicate_dir(run, k))
    for p in store.list(paths.curves_dir(run), recursive=True):
        if k in paths.bend_pair(p):
            store.delete(p)
    files = store.list(paths.points_dir(run), paths.PARQUET, recursive=True)
    for p in files:
        if not paths.is_part(p) and k in key_replicates(p):
            store.delete(p)
    for folder in {p.rsplit("/", 1)[0] for p in files if paths.is_part(p)}:
        drop_replicate(store, folder, k)
    # every table and report that used it is gone with it (they would be rebuilt as stale anyway)
    store.delete(paths.tables_dir(run))
    for path in (paths.report(run), paths.report_inputs(run)):
        store.delete(path)
