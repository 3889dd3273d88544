"""The driver's sweep: plan, prepare, execute; re-plan what a lost node or a crashed stage took with
it (bounded rounds); report failures by kind, each with its repair."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("raysweep")


@dataclass
class RunSummary:
    trained: list[int] = field(default_factory=list)
    items_total: int = 0
    items_run: int = 0
    rows_written: int = 0
    failures: list[dict] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)


def sweep_rounds(run, sweeps, progress, address, local, rounds, connect):
    """Evaluate every missing item of `run` (a raysweep.api.Run); returns its RunSummary."""
    from raysweep.cluster import ResourceWatch, joins_cluster
    from raysweep.progress import SweepProgress, say
    from raysweep.sweep import missing, run_local, run_ray

    # on a cluster the head may have no dataset: join first, and plan with what the workers see
    actors = connect() if not local and joins_cluster(address) else None
    from raysweep.sweep.refine import proposals

    items = run.plan(sweeps)
    todo = missing(items, run.store, run.job)
    summary = RunSummary(items_total=len(items), items_run=len(todo))
    refining = any(s.refine for s in run.job.sweeps if not sweeps or s.name in sweeps)
    if not todo and not refining:
        return summary
    results: list[dict] = []

    if not local and actors is None:
        actors = connect()

    def execute(todo: list[dict], planned: list[dict], bar) -> None:
        for attempt in range(1, rounds + 1):
            try:
                if local:
                    run_local(run.job, run.store, todo, progress=bar.update, out=results)
                else:
                    run_ray(run.job, run.store, todo, actors, progress=bar.update, out=results)
            except Exception as exc:  # a lost node or actor can take the whole stage down
                if attempt == rounds:
                    raise
                log.warning("sweep stage failed (%s: %s); planning the missing items again",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            failed = {r["key"] for r in results if r["status"] not in ("ok", "transient")}
            todo = [it for it in missing(planned, run.store, run.job) if it["path"] not in failed]
            if not todo:
                break

    watch = ResourceWatch(actors[1] if actors else 0, "the evaluator actors", say)
    with SweepProgress(len(items), len(items) - len(todo), enabled=progress) as bar, watch:
        if todo:
            execute(todo, items, bar)
        most = max((s.refine for s in run.job.sweeps), default=0)
        for _ in range(most // 2 + 1):  # adaptive α: one level per round, until every curve converged
            if summary.failures or any(r["status"] != "ok" for r in results):
                break
            extra = missing(proposals(run, [it for it in items if not sweeps or it["sweep"] in sweeps]),
                            run.store, run.job)
            if not extra:
                break
            summary.items_total += len(extra)
            summary.items_run += len(extra)
            execute(extra, extra, bar)
    summary.rows_written = sum(r["rows"] for r in results)
    last = {r["key"]: r for r in results}  # an item retried in a later round counts by its last try
    summary.failures = [r for r in last.values() if r["status"] != "ok"]
    return summary


def failure_message(run, failures: list[dict]) -> str:
    """One paragraph per kind of failure, each with its own repair."""
    name = run.job.name
    repair = {
        "checkpoint": f"A damaged or missing checkpoint: retrain its replicate with `raysweep train {name} "
                      f"--replicate K --force`, then rerun `raysweep run {name}`.",
        "oom": f"Out of memory while evaluating: lower eval.batch_size (now {run.job.eval.batch_size}), e.g. "
               f"--set eval.batch_size={max(1, run.job.eval.batch_size // 4)}, or eval.first_layer_bytes, and rerun.",
        "transient": "The store or the network failed even after retries: check the storage and rerun; only the "
                     "missing items are evaluated.",
        "error": "An unexpected error (likely a raysweep bug): rerun with RAYSWEEP_DEBUG=1 and report it.",
    }
    parts = [f"{len(failures)} work item(s) of {name} failed; all other results were kept."]
    for kind in ("checkpoint", "oom", "transient", "error"):
        lines = sorted({f["message"] for f in failures if f["status"] == kind})
        if not lines:
            continue
        shown = "\n  - ".join(lines[:10]) + (f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else "")
        parts.append(f"  - {shown}\n{repair[kind]}")
    return "\n".join(parts)
