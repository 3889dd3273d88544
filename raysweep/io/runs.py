"""The runs stored under a root, and the message for a run that is not there."""
from __future__ import annotations

from raysweep.io import paths
from raysweep.io.store import Store
from raysweep.spec import Job


def locator(job: Job, store: Store) -> str:
    """What a printed fix command names the run by, so that it acts on this run pasted from anywhere: the run's id
    (job/hash: the --set overrides are in its hash), its storage and its replicates."""
    import shlex

    return f"{job.name}/{job.hash} --storage {shlex.quote(store.uri)} --replicates {job.replicates}"


def is_trained(store: Store, job: Job, k: int) -> bool:
    """Replicate k of the job's run finished training (or was copied in: external checkpoints)."""
    return store.exists(paths.train_done(paths.run_dir(job.name, job.hash), k))


def list_runs(store: Store) -> list[dict]:
    """Every run stored under `store`: job, hash, replicates trained (of those declared), sweeps, when."""
    import datetime

    out = []
    for job_dir in store.list_dirs(""):
        for run_dir in store.list_dirs(job_dir):
            files = store.list_info(run_dir, paths.JSON)
            spec_file = paths.job_json(run_dir)
            if not any(f[0] == spec_file for f in files) and not store.list_dirs(run_dir):
                continue
            try:
                declared = store.read_json(spec_file).get("replicates") if store.exists(spec_file) else None
            except (ValueError, OSError, AttributeError):
                declared = None
            trained = sum(store.exists(paths.replicate_done(d)) for d in store.list_dirs(run_dir) if "/replicate_" in d)
            sweeps = sorted({d.rsplit("/", 1)[-1] for folder in store.list_dirs(paths.points_dir(run_dir))
                             for d in store.list_dirs(folder)})
            stamps = [f[2] for f in store.list_info(run_dir, "", recursive=False)] or [0]
            out.append({"job": job_dir.rsplit("/", 1)[-1], "hash": run_dir.rsplit("/", 1)[-1],
                        "replicates": f"{trained}/{declared if declared is not None else '?'}", "sweeps": sweeps,
                        "modified": datetime.datetime.fromtimestamp(max(stamps) / 1e9).strftime("%Y-%m-%d %H:%M")})
    return out


def not_found_message(job: Job, store: Store) -> str:
    runs = list_runs(store)
    same = [r for r in runs if r["job"] == job.name]
    shown = "\n".join(f"  {r['job']:24s} {r['hash']}  replicates {r['replicates']:7s} modified {r['modified']}  "
                      f"sweeps {', '.join(r['sweeps']) or '-'}" for r in (same or runs)[:20])
    where = store.url("")
    return (
        f"no run of {job.name} with these settings is stored in {where} (it would be "
        f"{store.url(paths.run_dir(job.name, job.hash))}; "
        f"the hash {job.hash} covers the data, model, train and seed fields as the job file and --set "
        f"overrides give them). "
        + (
            f"Runs of {job.name} stored there:\n{shown}\n"
            if same
            else f"Runs stored there:\n{shown}\n"
            if runs
            else "Nothing is stored there yet. "
        )
        + f"Pass the --set overrides the run was made with (`raysweep show {job.name} --set ...` prints "
        f"the hash), or the --storage it was written to; `raysweep runs --storage {where}` lists the runs."
    )
