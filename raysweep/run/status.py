"""What a run has done (`raysweep status`), and forgetting a replicate (`raysweep train --force`)."""
from __future__ import annotations

from raysweep.analysis.scan import damaged_files, point_paths
from raysweep.errors import NotTrainedError
from raysweep.io import paths
from raysweep.io.runs import is_trained
from raysweep.io.store import Store
from raysweep.spec import Job
from raysweep.sweep.compact import drop_replicate
from raysweep.sweep.planner import done_paths
from raysweep.work.items import key_replicates
from raysweep.work.kinds import all_kinds


def status(run, verify: bool = False) -> dict:
    """Trained replicates, their checkpoints (each missing, truncated or — with `verify` — damaged one named),
    sweep items done/total per sweep, unreadable points files."""
    store, job = run.store, run.job
    store.check(write=False)  # a missing bucket or a dead endpoint: one message, not "not trained"
    out = {"run": store.url(run.dir), "replicates": {}, "damaged": []}
    found = {k: _checkpoints(store, run.dir, k) for k in run.replicates}
    every = set().union(*(set(files) | set(manifests) for files, manifests in found.values())) if found else set()
    for k, (files, manifests) in found.items():
        trained = is_trained(store, job, k)
        out["replicates"][k] = {"trained": trained, "checkpoints": len(files),
                                "expected": len(every) if trained else len(files),
                                "problems": _problems(store, run.dir, k, files, manifests, every if trained else set(),
                                                      verify)}
    try:
        items = run.plan()
    except NotTrainedError:
        out["sweeps"] = None
        return out
    damaged = set(damaged_files(store, point_paths(store, job, tuple(all_kinds()))))
    done = done_paths(store, job) - damaged
    out["damaged"] = sorted(damaged)
    out["sweeps"] = {s.name: {"done": sum(1 for i in items if i.sweep == s.name and i.path in done),
                              "total": sum(1 for i in items if i.sweep == s.name)} for s in job.sweeps}
    out["report"] = run.report_state()
    return out


def _checkpoints(store: Store, run_dir: str, k: int) -> tuple[dict[int, int], dict[int, str]]:
    """(step -> file size, step -> manifest path) of replicate k, from one listing of its folder."""
    files, manifests = {}, {}
    for p, size, _ in store.list_info(paths.replicate_dir(run_dir, k)):
        step = paths.step_of(p)
        if step is None:
            continue
        if p.endswith(paths.SAFETENSORS):
            files[step] = size
        elif p.endswith(paths.JSON):
            manifests[step] = p
    return files, manifests


def _problems(store: Store, run_dir: str, k: int, files: dict, manifests: dict, expected: set,
              verify: bool) -> list[str]:
    """Each checkpoint of replicate k that is missing (its manifest, or another replicate, has the step),
    truncated (its size is not the manifest's) or, with `verify`, not what its sha256 says — from sizes and
    sha256 in the manifests; the tensors are never read."""
    import hashlib

    out = []
    for step in sorted(expected | set(files) | set(manifests)):
        entry = _manifest(store, manifests.get(step))
        if step not in files:
            why = (f"its manifest records sha256 {entry.get('sha256', '?')[:12]}…" if entry
                   else "the other replicates have it")
            out.append(f"step {step}: checkpoint missing ({why})")
        elif step not in manifests:
            out.append(f"step {step}: no manifest (the file is there, {files[step]:,} bytes)")
        elif entry is None:
            out.append(f"step {step}: its manifest cannot be read")
        elif isinstance(entry.get("bytes"), int) and entry["bytes"] != files[step]:
            out.append(f"step {step}: {files[step]:,} bytes where its manifest records {entry['bytes']:,} (truncated "
                       f"or overwritten)")
        elif verify and hashlib.sha256(store.read_bytes(paths.checkpoint(run_dir, k, step))).hexdigest() \
                != entry.get("sha256"):
            out.append(f"step {step}: does not match the sha256 its manifest records (damaged)")
    return out


def _manifest(store: Store, path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        entry = store.read_json(path)
    except (ValueError, OSError):
        return None
    return entry if isinstance(entry, dict) else None


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
