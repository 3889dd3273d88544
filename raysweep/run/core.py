"""A run: one job's replicates, sweeps and tables in one store. Its flow is here, in one place:

    connect → preflight → train (replicates, then instability children and curves' bends) → plan → execute rounds
    (→ refine) → compact → aggregate → report

Each step calls down with plain values (the job, the store, items, callables) and gets results back;
where the work runs (a local Ray, or a cluster) is the Session's, the tables as of now are the
Tables'. Nothing below this package holds a Run.
"""
from __future__ import annotations

import logging
import os
import time

import polars as pl

from raysweep import validate
from raysweep.analysis import aggregate
from raysweep.analysis.scan import scan_points
from raysweep.cluster.policy import ResourceWatch, capacity, concurrent_trials
from raysweep.connect import is_local
from raysweep.errors import DamagedPoints, SpecError, SweepFailed
from raysweep.io import paths
from raysweep.io.lease import Lease
from raysweep.io.runs import is_trained
from raysweep.io.store import Store
from raysweep.kinds.curve import bends_todo
from raysweep.kinds.lines import children_todo
from raysweep.progress import SweepProgress, TrainProgress, say
from raysweep.run.session import Session
from raysweep.run.status import forget_replicate, status
from raysweep.run.tables import Tables
from raysweep.spec import POINT_KINDS, Job
from raysweep.sweep.compact import compact_folders, forget_file
from raysweep.sweep.execute import run_local, run_ray
from raysweep.sweep.planner import missing, plan
from raysweep.sweep.prep import prepare
from raysweep.sweep.refine import POINT_COLUMNS, proposals
from raysweep.sweep.rounds import RunSummary, failure_message, sweep_rounds
from raysweep.work.kinds import sweep_folder
from raysweep.work.tasks import Child, Replicate, Task

log = logging.getLogger("raysweep")


class Run:
    def __init__(self, job: Job, store: Store, shared_storage: bool = False, python: bool = False):
        self.job = job if job.digests else validate.complete(job)  # a Job built in Python: digests computed here
        self.store = store
        self.dir = paths.run_dir(self.job.name, self.job.hash)
        self.shared_storage = shared_storage or os.environ.get("RAYSWEEP_SHARED_STORAGE", "") in ("1", "true")
        self.tables = Tables(self.job, store, python)
        self._lease = None
        self._session: Session | None = None

    def __repr__(self) -> str:
        return f"Run({self.job.name!r}, hash={self.job.hash!r}, at={self.store.url(self.dir)!r})"

    @property
    def replicates(self) -> list[int]:
        return list(range(self.job.replicates))

    @property
    def lease(self):
        """This driver's hold on the run (one driver computes at a time; see io/lease.py)."""
        if self._lease is None:
            self._lease = Lease(self.store, self.dir, say)
        return self._lease

    def session(self, address: str | None = None) -> Session:
        """Where the work runs: one Session per run and address (its checks are made once)."""
        if self._session is None or self._session.address != address:
            self._session = Session(self.job, self.store, address, self.shared_storage)
        return self._session

    def data_info(self):
        return self.session(self._session.address if self._session else None).data_info()

    # ------------------------------------------------------------------ tables
    def exists(self) -> bool:
        return self.tables.exists()

    def require(self) -> None:
        self.tables.require()

    @property
    def points(self) -> pl.LazyFrame:
        return self.tables.points()

    @property
    def curves(self) -> pl.LazyFrame:
        return self.tables.get("curves")

    @property
    def barriers(self) -> pl.LazyFrame:
        return self.tables.get("barriers")

    @property
    def checkpoints(self) -> pl.LazyFrame:
        return self.tables.get("checkpoints")

    @property
    def trajectory(self) -> pl.LazyFrame:
        return self.tables.get("trajectory")

    @property
    def function_map(self) -> pl.LazyFrame:
        return self.tables.get("function_map")

    @property
    def surface(self) -> pl.LazyFrame:
        return self.tables.get("surface")

    def table(self, name: str, sweep: str | None = None, partial: bool = False) -> pl.DataFrame:
        return self.tables.table(name, sweep, partial)

    def query(self, sql: str, partial: bool = False) -> pl.DataFrame:
        return self.tables.query(sql, partial)

    # ------------------------------------------------------------------ the flow
    def run(self, progress: bool = True, address: str | None = None, report: bool = True) -> RunSummary:
        """train → sweep → aggregate → report. Raises SweepFailed after keeping what succeeded."""
        session = self.session(address)
        session.preflight()
        with self.lease:
            t0 = time.perf_counter()
            trained = self._untrained(self.replicates)
            if trained:
                self._train(session, [Replicate(k) for k in trained], progress)
            self._train_children(session, progress)
            t1 = time.perf_counter()
            summary = self.sweep(progress=progress, address=address)
            t2 = time.perf_counter()
            summary.outputs = {"run": self.store.url(self.dir), "tables": self.store.url(paths.tables_dir(self.dir))}
            if report:
                summary.outputs["report"] = self.plot()[0]
            summary.trained = trained
            summary.seconds = {"train": t1 - t0, "sweep": t2 - t1, "aggregate+report": time.perf_counter() - t2}
        if summary.failures:
            raise SweepFailed(failure_message(self.job, summary.failures, self.store))
        return summary

    def train(self, replicates: list[int] | None = None, force: bool = False, progress: bool = True,
              address: str | None = None) -> list[int]:
        """Train the replicates not yet trained (one Tune trial each); returns those trained now."""
        ks = self.replicates if replicates is None else replicates
        outside = sorted({k for k in ks if not 0 <= k < self.job.replicates})
        if outside:
            raise SpecError(f"--replicate {outside[0]} is not a replicate of {self.job.name}, which has "
                            f"{self.job.replicates} (0 to {self.job.replicates - 1}); to grow the run, add "
                            f"--replicates {max(outside) + 1}.")
        if force:
            for k in ks:
                self.forget_replicate(k)
        session = self.session(address)
        todo = self._untrained(ks)
        if todo:
            session.preflight()
            with self.lease:
                todo = self._untrained(ks)  # another driver may have trained them while we waited
                if todo:
                    self._train(session, [Replicate(k) for k in todo], progress)
        self._train_children(session, progress)
        return todo

    def _untrained(self, ks: list[int]) -> list[int]:
        return [k for k in ks if not is_trained(self.store, self.job, k)]

    def _train(self, session: Session, todo: list[Task], progress: bool) -> None:  # tasks of one kind
        if self.job.external:  # checkpoints trained elsewhere: copied in, checked, no training
            from raysweep.train.external import ingest_all  # torch

            return ingest_all(self.job, self.store, [t.k for t in todo], session.data_info())
        from raysweep.train.tune import train_all  # torch, Ray

        resources = session.trial_resources()
        self.store.write_json(paths.job_json(self.dir), self.job.to_dict())
        cap = capacity()
        wanted = min(resources["gpu"] * len(todo), max(cap.gpus_max, resources["gpu"]))
        with TrainProgress(self.job, todo, enabled=progress) as bar, \
                ResourceWatch(wanted, f"{len(todo)} training trial(s)", say):
            train_all(self.job, self.store, todo, resources, progress=bar.update,
                      concurrent=concurrent_trials(self.job, resources, len(todo), cap))

    def children_todo(self) -> list[Child]:  # instability children of trained replicates, not trained yet
        return children_todo(self.job, self.store, self._trained())

    def _trained(self) -> list[int]:
        return [k for k in self.replicates if is_trained(self.store, self.job, k)]

    def _train_children(self, session: Session, progress: bool) -> None:
        """Instability children, then the curve sweeps' bends between trained replicates."""
        todo = self.children_todo()
        if todo:
            say(f"instability: training {len(todo)} children spawned from stored checkpoints")
            with self.lease:
                self._train(session, todo, progress)
        bends = bends_todo(self.job, self.store, self._trained())
        if bends:
            say(f"curves: training {len(bends)} bend(s) between trained replicates (Garipov et al. 2018)")
            with self.lease:
                self._train(session, bends, progress)

    def plan(self, sweeps: list[str] | None = None) -> list:
        return plan(self.job, self.store, self.replicates, self.data_info(), sweeps)

    def sweep(self, sweeps: list[str] | None = None, progress: bool = True, address: str | None = None,
              local: bool = False, rounds: int = 3) -> RunSummary:
        """Evaluate every missing work item (Ray Data actor pool, or in-process with local=True), then
        compact and aggregate. Items lost with a node or a crashed stage are planned again from what
        is stored, up to `rounds` times; items that failed on their own (a corrupted checkpoint) are not
        retried. Points files found unreadable while aggregating are deleted and evaluated again."""
        with self.lease:
            for attempt in (1, 2):
                summary = self._sweep(sweeps, progress, address, local, rounds)
                if any(s.sharpness.at_peak for s in self.job.sweeps if not sweeps or s.name in sweeps):
                    summary = _merged(summary, self._sweep(sweeps, progress, address, local, rounds))  # at the peaks
                self.compact()
                try:
                    aggregate.aggregate(self.store, self.job)
                    return summary
                except DamagedPoints as exc:
                    if attempt == 2:
                        raise
                    log.warning("%s Deleting them and evaluating their items again.", exc)
                    for path in exc.paths:
                        forget_file(self.store, path)
            return summary

    def _sweep(self, sweeps, progress: bool, address: str | None, local: bool, rounds: int) -> RunSummary:
        session = self.session(address)
        # on a cluster the head may have no dataset: join first, and plan with what the workers see
        actors = session.actor_plan() if not local and session.joins_cluster else None
        items = self.plan(sweeps)
        refining = [s for s in self.job.sweeps if s.refine and (not sweeps or s.name in sweeps)]
        todo = missing(items, self.store, self.job)
        if not todo and not refining:
            return RunSummary(items_total=len(items))
        if not local and actors is None:
            actors = session.actor_plan()
        with SweepProgress(len(items), len(items) - len(todo), enabled=progress) as bar, \
                ResourceWatch(actors[1] if actors else 0, "the evaluator actors", say):
            execute = self._executor(session, actors, local, bar.update)
            propose = self._proposer(items, sweeps) if refining else None
            return sweep_rounds(self.job, self.store, items, execute, rounds, propose)

    def _executor(self, session: Session, actors, local: bool, on_result):
        """execute(todo, results): prepare the items, then evaluate them here or on the actor pool."""

        def execute(todo: list, results: list) -> None:
            todo = prepare(self.job, self.store, todo, session.data_info())
            if local:
                run_local(self.job, self.store, todo, progress=on_result, out=results)
            else:
                run_ray(self.job, self.store, todo, actors, is_local(), progress=on_result, out=results)
        return execute

    def _proposer(self, items: list, sweeps):
        """propose(): the next level of adaptive-α items, from the points stored now."""
        planned = [it for it in items if not sweeps or it.sweep in sweeps]
        return lambda: proposals(self.job, scan_points(self.store, self.job).select(POINT_COLUMNS).collect(),
                                 planned)

    def compact(self) -> int:
        """Fold each line sweep's item files into a few large Parquet parts once it holds many
        (sweep/compact.py: atomic, idempotent, resumable); returns how many item files were folded."""
        sweeps = [s for s in self.job.sweeps if s.kind in POINT_KINDS]
        folders = [sweep_folder(self.dir, s) for s in sweeps]
        with self.lease:  # on the cluster when the driver joined one: the driver only waits
            counts = compact_folders(self.store, folders)
        for s, n in zip(sweeps, counts):
            if n:
                log.info("compacted %d item files of sweep %s into Parquet parts", n, s.name)
        return sum(counts)

    def aggregate(self) -> dict[str, pl.DataFrame]:
        return aggregate.aggregate(self.store, self.job)

    def plot(self, out: str | None = None, formats=(), log_height: bool = False) -> list[str]:
        """Write the HTML report (to the Store, or to `out`) and PNG/SVG copies on request."""
        from raysweep.report.html import write_report

        self.require()
        return write_report(self.job, self.store, self.tables, out, formats, log_height)

    def forget_replicate(self, k: int) -> None:
        forget_replicate(self.job, self.store, k)

    def status(self, verify: bool = False) -> dict:
        return status(self, verify)

    def report_state(self) -> str:
        return self.tables.report_state()


def _merged(first: RunSummary, then: RunSummary) -> RunSummary:
    """Two passes of one sweep (the second plans what the first made plannable: sharpness at the peaks)."""
    ok = first.ok | then.ok
    failures = {f["key"]: f for f in first.failures + then.failures if f["key"] not in ok}  # the last try counts
    return RunSummary(items_total=(then.items_total or first.items_total - first.refined) + first.refined,
                      items_run=first.items_run + then.items_run, rows_written=first.rows_written + then.rows_written,
                      failures=list(failures.values()), refined=first.refined + then.refined, ok=ok,
                      store={k: first.store.get(k, 0) + then.store.get(k, 0)
                             for k in set(first.store) | set(then.store)})
