"""The driver's sweep loop: execute the missing items; plan again what a lost node or a crashed stage
took with it (bounded rounds); refine α where curves ask for it; report failures by kind, each with
its repair. Plain values in (items, an executor, a proposer), a summary out."""
from __future__ import annotations

import errno
import logging
import re
from dataclasses import dataclass, field
from typing import Callable

from raysweep.errors import StorageFull
from raysweep.io.runs import locator
from raysweep.io.store import Store
from raysweep.spec import Job
from raysweep.sweep.planner import missing

log = logging.getLogger("raysweep")


@dataclass
class RunSummary:
    trained: list[int] = field(default_factory=list)
    items_total: int = 0
    items_run: int = 0
    rows_written: int = 0
    failures: list[dict] = field(default_factory=list)
    store: dict = field(default_factory=dict)  # the evaluators' store requests and bytes, summed over the items
    seconds: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    refined: int = 0  # adaptive-α items proposed on the way (in items_total; a plan does not list them)
    ok: set = field(default_factory=set)  # keys of the items stored by this sweep


def sweep_rounds(job: Job, store: Store, items: list, execute: Callable, rounds: int = 3,
                 propose: Callable[[], list] | None = None) -> RunSummary:
    """Evaluate every missing item of `items` (all the planned items, done or not).

    `execute(todo, results)` evaluates items and appends one result dict per item to `results`;
    `propose()` returns the next level of adaptive-α items (sweep/refine.py), [] when none."""
    todo = missing(items, store, job)
    summary = RunSummary(items_total=len(items), items_run=len(todo))
    results: list[dict] = []

    def attempt(todo: list, planned: list) -> None:
        for n in range(1, rounds + 1):
            try:
                execute(todo, results)
            except Exception as exc:  # a lost node or actor can take the whole stage down
                if n == rounds:
                    raise
                log.warning("sweep stage failed (%s: %s); planning the missing items again",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            failed = {r["key"] for r in results if r["status"] not in ("ok", "transient")}
            todo = [it for it in missing(planned, store, job) if it.path not in failed]
            if not todo:
                return
        tried = {r["key"] for r in results if r["status"] != "ok"}  # a failure keeps its own message
        for it in (it for it in todo if it.path not in tried):  # not stored after the last round: a failure too
            results.append({"key": it.path, "status": "lost", "rows": 0,
                            "message": f"{it.key} of sweep {it.sweep} was not stored after {rounds} rounds (its node "
                                       f"or the sweep stage was lost each time)"})

    if todo:
        attempt(todo, items)
    most = max((s.refine for s in job.sweeps), default=0)
    for _ in range(most // 2 + 1 if propose else 0):  # adaptive α: one level per round, until every curve converged
        if any(r["status"] != "ok" for r in results):
            break
        extra = missing(propose(), store, job)
        if not extra:
            break
        summary.items_total += len(extra)
        summary.items_run += len(extra)
        summary.refined += len(extra)
        attempt(extra, extra)
    full = [r for r in results if r["status"] == "full"]
    if full:  # every further item would fail alike: stop with the storage's message
        raise StorageFull(errno.ENOSPC, full[0]["message"].split(": ", 1)[-1])
    summary.rows_written = sum(r["rows"] for r in results)
    summary.store = {k: sum(r.get(f"store_{k}", 0) for r in results) for k in ("requests", "bytes_read",
                                                                               "bytes_written")}
    last = {r["key"]: r for r in results}  # an item retried in a later round counts by its last try
    summary.failures = [r for r in last.values() if r["status"] != "ok"]
    summary.ok = {k for k, r in last.items() if r["status"] == "ok"}
    return summary


def failure_message(job: Job, failures: list[dict], store: Store) -> str:
    """One paragraph per kind of failure, each with its own repair; every command names the run by its id, storage
    and replicates (a pasted command acts on this run, from any folder, whatever --set made it)."""
    name = locator(job, store)
    damaged = sorted({int(k) for f in failures if f["status"] == "checkpoint"
                      for k in re.findall(r"replicate_(\d+)/", f["message"])})
    which = " ".join(f"--replicate {k}" for k in damaged) or "--replicate K"
    repair = {
        "checkpoint": f"A damaged or missing checkpoint: retrain its replicate with `raysweep train {name} "
                      f"{which} --force`, then rerun `raysweep run {name}`.",
        "oom": f"Out of memory while evaluating: lower eval.batch_size (now {job.eval.batch_size}), e.g. "
               f"--set eval.batch_size={max(1, job.eval.batch_size // 4)}, or eval.first_layer_bytes, and rerun.",
        "transient": "The store or the network failed even after retries: check the storage and rerun; only the "
                     "missing items are evaluated.",
        "lost": f"Work lost with nodes or a failing sweep stage: rerun `raysweep run {name}` (only the missing "
                f"items are evaluated); if it recurs, look for nodes that leave (`ray status`) or run out of memory.",
        "error": "An unexpected error (likely a raysweep bug): rerun with RAYSWEEP_DEBUG=1 and report it.",
    }
    parts = [f"{len(failures)} work item(s) of {job.name}/{job.hash} failed; all other results were kept."]
    for kind in ("checkpoint", "oom", "transient", "lost", "error"):
        lines = sorted({f["message"] for f in failures if f["status"] == kind})
        if not lines:
            continue
        shown = "\n  - ".join(lines[:10]) + (f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else "")
        parts.append(f"  - {shown}\n{repair[kind]}")
    return "\n".join(parts)
