"""The Python API. The CLI is a thin layer over it; notebooks use it directly::

    import raysweep
    run = raysweep.open("digits_mlp")          # or a path to your own TOML, storage="s3://..."
    run.run()                                    # train -> sweep -> aggregate -> report
    run.curves.filter(pl.col("sweep") == "init_to_final").collect()
    run.query("select step, max(max_increase_mean) from barriers group by step")
"""
from __future__ import annotations

import logging
import os
import time
from typing import Iterable

import polars as pl

from raysweep.analysis import aggregate
from raysweep.errors import RunNotFound, SweepFailed, TrainingFailed  # noqa: F401  (the API's errors)
from raysweep.io import paths
from raysweep.io.runs import list_runs, not_found_message  # noqa: F401
from raysweep.io.store import Store
from raysweep.jobs import load_job
from raysweep.spec import Job, SpecError
from raysweep.sweep.rounds import RunSummary, failure_message

log = logging.getLogger("raysweep")


def open(job: str | Job, storage: str | None = None, overrides: Iterable[str] = (),
         replicates: int | None = None, shared_storage: bool = False) -> "Run":
    """The run of `job` (a built-in name, a TOML path or a Job) in `storage`.

    `shared_storage=True` (or $RAYSWEEP_SHARED_STORAGE=1) says a local storage path is a filesystem
    mounted on every node of a multi-node cluster (NFS, FSx, ...)."""
    if not isinstance(job, Job):
        job = load_job(job, overrides, replicates)
    return Run(job, Store(storage), shared_storage)


class Run:
    def __init__(self, job: Job, store: Store, shared_storage: bool = False):
        self.job, self.store = job, store
        self.dir = paths.run_dir(job.name, job.hash)
        self.shared_storage = shared_storage or os.environ.get("RAYSWEEP_SHARED_STORAGE", "") in ("1", "true")
        self._checked_on_cluster = False
        self._storage_reached = False  # check_storage_reaches_nodes passed (once per Run)
        self._data_info = None  # the dataset's shape and sizes, as seen where the work runs
        self._lease = None
        self._line_tables: tuple[str, tuple] | None = None  # (inputs fingerprint, (curves, barriers)) rebuilt

    @property
    def lease(self):
        """This driver's hold on the run (one driver computes at a time; see lease.py)."""
        if self._lease is None:
            from raysweep.io.lease import Lease
            from raysweep.progress import say

            self._lease = Lease(self.store, self.dir, say)
        return self._lease

    def data_info(self):
        """Shape, classes and split sizes of the job's dataset (read once)."""
        from raysweep.data import dataset_info

        if self._data_info is None:
            self._data_info = dataset_info(self.job.data)
        return self._data_info

    def __repr__(self) -> str:
        return f"Run({self.job.name!r}, hash={self.job.hash!r}, at={self.store.url(self.dir)!r})"

    @property
    def replicates(self) -> list[int]:
        return list(range(self.job.replicates))

    # ------------------------------------------------------------------ tables
    def exists(self) -> bool:
        """Whether anything of this run is stored (its job.json, or any replicate)."""
        return self.store.exists(paths.job_json(self.dir)) or bool(self.store.list_dirs(self.dir))

    def _require(self) -> None:
        if not self.exists():
            self.store.check(write=False)  # a missing bucket or a dead endpoint says so, not "no run"
            raise RunNotFound(not_found_message(self))

    @property
    def points(self) -> pl.LazyFrame:
        self._require()
        return aggregate.scan_points(self.store, self.job)

    def _table(self, name: str, made_of: dict | None = None) -> pl.LazyFrame:
        """A table as of now: the stored one if what made it is still what is stored, else rebuilt
        from the points (so a changed grid, replicate count or retrained replicate never shows stale
        numbers)."""
        self._require()
        if name == "points":
            return self.points
        made_of = made_of or aggregate.inputs(self.store, self.job)
        path = paths.table(self.dir, name)
        recorded = self.store.read_json(paths.tables_inputs(self.dir)) if self.store.exists(
            paths.tables_inputs(self.dir)) else None
        if isinstance(recorded, dict) and recorded.get("fingerprint") == made_of["fingerprint"] and self.store.exists(path):
            return pl.scan_pyarrow_dataset(self.store.dataset([path]))
        if name in ("curves", "barriers"):  # one read of the points rebuilds both, kept while the inputs hold
            if self._line_tables is None or self._line_tables[0] != made_of["fingerprint"]:
                self._line_tables = (made_of["fingerprint"], aggregate.line_tables(self.store, self.job))
            return self._line_tables[1][0 if name == "curves" else 1].lazy()
        return aggregate.build(name, self.store, self.job).lazy()

    @property
    def curves(self) -> pl.LazyFrame:
        return self._table("curves")

    @property
    def barriers(self) -> pl.LazyFrame:
        return self._table("barriers")

    @property
    def checkpoints(self) -> pl.LazyFrame:
        return self._table("checkpoints")

    @property
    def trajectory(self) -> pl.LazyFrame:
        return self._table("trajectory")

    @property
    def function_map(self) -> pl.LazyFrame:
        return self._table("function_map")

    @property
    def surface(self) -> pl.LazyFrame:
        return self._table("surface")

    def table(self, name: str, sweep: str | None = None) -> pl.DataFrame:
        if name not in aggregate.TABLES:
            raise SpecError(f"unknown table {name!r}; tables are {list(aggregate.TABLES)}")
        lf = self._table(name)
        if sweep is not None:
            self.job.sweep(sweep)  # raises with the list of sweeps
            lf = lf.filter(pl.col("sweep") == sweep)
        return lf.collect()

    def query(self, sql: str) -> pl.DataFrame:
        """Polars SQL over every table (points, curves, barriers, checkpoints, trajectory, …)."""
        self._require()
        made_of = aggregate.inputs(self.store, self.job)
        ctx = pl.SQLContext({name: self._table(name, made_of) for name in aggregate.TABLES})
        return ctx.execute(sql, eager=True)

    # ------------------------------------------------------------------ work
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
        todo = self._untrained(ks)
        if todo:
            self.preflight(address)
            with self.lease:
                todo = self._untrained(ks)  # another driver may have trained them while we waited
                if todo:
                    self._train(todo, progress, address)
        self._train_children(progress, address)
        return todo

    def children_todo(self) -> list[str]:
        """Instability children ("k/step/child") of trained replicates not trained yet."""
        from raysweep.train import is_trained
        from raysweep.train.spawn import child_done

        from raysweep.sweep import read_manifests
        from raysweep.sweep.planner import check_spawn_steps

        sweeps = [sw for sw in self.job.sweeps if sw.kind == "instability"]
        trained = [k for k in self.replicates if is_trained(self.store, self.job, k)] if sweeps else []
        for k in trained:
            for sw in sweeps:
                check_spawn_steps(sw, k, read_manifests(self.store, self.job, k))
        steps = sorted({s for sw in sweeps for s in sw.spawn_steps})
        return [f"{k}/{s}/{c}" for k in trained for s in steps for c in (0, 1)
                if not child_done(self.store, self.job, k, s, c)]

    def _train_children(self, progress: bool, address: str | None) -> None:
        todo = self.children_todo()
        if not todo:
            return
        from raysweep.progress import say
        from raysweep.train.tune import train_run

        say(f"instability: training {len(todo)} children spawned from stored checkpoints")
        with self.lease:
            train_run(self, todo, False, address)

    def preflight(self, address: str | None = None) -> None:
        """A missing dataset or an unusable store stops here, before any work is started.

        On a cluster the dataset is looked for later, on a node that will run the work (the head
        usually has no dataset); here only the store is checked."""
        from raysweep.cluster import check_storage_reaches_nodes, init_ray, joins_cluster

        if joins_cluster(address):  # a local folder on a multi-node cluster: refused before anything is written
            init_ray(address, job=self.job)
            check_storage_reaches_nodes(self.store, self.shared_storage)
            self._storage_reached = True
        else:
            from raysweep.plugins import check_builder

            check_builder(self.job, self.data_info())  # the user's builder returns a module: checked once, here
            if self.job.eval.device == "cuda":
                import torch

                if not torch.cuda.is_available():
                    raise SpecError("eval.device = \"cuda\" but torch sees no CUDA device on this machine; use "
                                    "--set eval.device=auto (CUDA when present) or cpu.")
        self.store.check()

    def _untrained(self, ks: list[int]) -> list[int]:
        from raysweep.train import is_trained

        return [k for k in ks if not is_trained(self.store, self.job, k)]

    def _connect(self, address: str | None, resources: dict) -> None:
        from raysweep.cluster.checks import connect

        connect(self, address, resources)

    def _train(self, todo: list[int], progress: bool, address: str | None) -> None:
        if self.job.external:  # checkpoints trained elsewhere: copied in, checked, no training
            from raysweep.io.external import ingest_all

            return ingest_all(self.job, self.store, todo, self.data_info())
        from raysweep.train.tune import train_run

        train_run(self, todo, progress, address)

    def forget_replicate(self, k: int) -> None:
        """Delete replicate k's checkpoints and every stored point that used them."""
        from raysweep.sweep.items import key_replicates

        from raysweep.sweep.compact import drop_replicate, is_part

        self.store.delete(paths.replicate_dir(self.dir, k))
        for p in self.store.list(paths.points_dir(self.dir), ".parquet", recursive=True):
            if k in key_replicates(p):
                self.store.delete(p)
        for folder in {p.rsplit("/", 1)[0] for p in self.store.list(paths.points_dir(self.dir), ".parquet", True)
                       if is_part(p)}:
            drop_replicate(self.store, folder, k)
        # every table and report that used it is gone with it (they would be rebuilt as stale anyway)
        self.store.delete(paths.tables_dir(self.dir))
        for path in (paths.report(self.dir), paths.report_inputs(self.dir)):
            self.store.delete(path)

    def plan(self, sweeps: list[str] | None = None) -> list[dict]:
        from raysweep.sweep import plan

        return plan(self.job, self.store, self.replicates, self.data_info(), sweeps)

    def sweep(self, sweeps: list[str] | None = None, progress: bool = True, address: str | None = None,
              local: bool = False, rounds: int = 3) -> RunSummary:
        """Evaluate every missing work item (Ray Data actor pool, or in-process with local=True).

        Items lost with a node or a crashed stage are planned again from what is stored, up to
        `rounds` times; items that failed on their own (a corrupted checkpoint) are not retried.
        """
        from raysweep.cluster import actor_plan, capacity, init_ray

        def connect():
            init_ray(address, job=self.job)
            plan = actor_plan(self.job, capacity())
            self._connect(address, {"cpu": plan[2], "gpu": plan[1]})
            return plan

        from raysweep.sweep.rounds import sweep_rounds

        with self.lease:
            summary = sweep_rounds(self, sweeps, progress, address, local, rounds, connect)
            self.compact()
            return summary

    def compact(self) -> int:
        """Fold each line sweep's item files into a few large Parquet parts once it holds many
        (sweep.compact: atomic, idempotent, resumable); returns how many item files were folded."""
        from raysweep.spec import LINE_KINDS, sweep_hash
        from raysweep.sweep.compact import compact

        folded = 0
        with self.lease:
            for s in self.job.sweeps:
                if s.kind in LINE_KINDS:
                    n = compact(self.store, paths.sweep_dir(self.dir, s.kind, s.name, sweep_hash(s)))
                    if n:
                        log.info("compacted %d item files of sweep %s into Parquet parts", n, s.name)
                    folded += n
        return folded

    def aggregate(self) -> dict[str, pl.DataFrame]:
        return aggregate.aggregate(self.store, self.job)

    def plot(self, out: str | None = None, formats: Iterable[str] = ()) -> list[str]:
        """Write the HTML report (to the Store, or to `out`) and PNG/SVG copies on request."""
        from raysweep.report.html import write_report

        self._require()
        return write_report(self, out, formats)

    def run(self, progress: bool = True, address: str | None = None, report: bool = True) -> RunSummary:
        """train → sweep → aggregate → report. Raises SweepFailed after keeping what succeeded."""
        self.preflight(address)
        with self.lease:
            return self._run(progress, address, report)

    def _run(self, progress: bool, address: str | None, report: bool) -> RunSummary:
        t0 = time.perf_counter()
        trained = self._untrained(self.replicates)
        if trained:
            self._train(trained, progress, address)
        self._train_children(progress, address)
        t1 = time.perf_counter()
        summary = self.sweep(progress=progress, address=address)
        t2 = time.perf_counter()
        self.aggregate()
        summary.outputs = {"run": self.store.url(self.dir),
                           "tables": self.store.url(f"{self.dir}/tables/")}
        if report:
            summary.outputs["report"] = self.plot()[0]
        summary.trained = trained
        summary.seconds = {"train": t1 - t0, "sweep": t2 - t1, "aggregate+report": time.perf_counter() - t2}
        if summary.failures:
            raise SweepFailed(failure_message(self, summary.failures))
        return summary

    def status(self) -> dict:
        """What is done: trained replicates, checkpoints, sweep items done/total per sweep."""
        from raysweep.train import is_trained
        from raysweep.sweep import NotTrainedError, done_paths

        self.store.check(write=False)  # a missing bucket or a dead endpoint: one message, not "not trained"
        out = {"run": self.store.url(self.dir), "replicates": {}}
        for k in self.replicates:
            ck = [p for p in self.store.list(paths.replicate_dir(self.dir, k), ".safetensors")
                  if "/step_" in p]
            out["replicates"][k] = {"trained": is_trained(self.store, self.job, k), "checkpoints": len(ck)}
        try:
            items = self.plan()
        except NotTrainedError:
            out["sweeps"] = None
            return out
        done = done_paths(self.store, self.job)
        out["sweeps"] = {s.name: {"done": sum(1 for i in items if i["sweep"] == s.name and i["path"] in done),
                                  "total": sum(1 for i in items if i["sweep"] == s.name)} for s in self.job.sweeps}
        out["report"] = self.report_state()
        return out

    def report_state(self) -> str:
        """"current" (shows what is stored now), "stale" (made from other inputs) or "none"."""
        if not self.store.exists(paths.report(self.dir)):
            return "none"
        try:
            recorded = self.store.read_json(paths.report_inputs(self.dir))["fingerprint"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return "stale"
        return "current" if recorded == aggregate.inputs(self.store, self.job)["fingerprint"] else "stale"
