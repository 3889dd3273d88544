"""A run's tables as of now: the stored ones while what made them is still what is stored, else
rebuilt from the points — so a changed grid, replicate count or retrained replicate never shows
stale numbers, a sweep with no points is named instead of left out, and an unreadable points file
is named with its repair instead of ending the command."""
from __future__ import annotations

import logging

import polars as pl

from raysweep.analysis import aggregate
from raysweep.analysis.scan import (
    inputs,
    kinds_of_table,
    scan_points,
    sweep_files,
    tables_of,
)
from raysweep.errors import DamagedPoints, MissingResults, RunNotFound, SpecError, in_python
from raysweep.io import paths
from raysweep.io.runs import locator, not_found_message
from raysweep.io.store import Store
from raysweep.progress import warn
from raysweep.spec import Job, sweep_hash

log = logging.getLogger("raysweep")


class Tables:
    def __init__(self, job: Job, store: Store, python: bool = False):
        self.job, self.store = job, store
        self.python = python  # opened by raysweep.open: errors name its arguments, not the command's options
        self.dir = paths.run_dir(job.name, job.hash)
        self._line: tuple[str, tuple] | None = None  # (inputs fingerprint, (curves, barriers)) rebuilt
        self.skip: frozenset[str] = frozenset()  # unreadable points files, left out (and named) once found

    def exists(self) -> bool:
        """Whether anything of this run is stored (its job.json, or any replicate)."""
        return self.store.exists(paths.job_json(self.dir)) or bool(self.store.list_dirs(self.dir))

    def require(self) -> None:
        if not self.exists():
            self.store.check(write=False)  # a missing bucket or a dead endpoint says so, not "no run"
            raise RunNotFound(self._words(not_found_message(self.job, self.store)))

    def missing_sweeps(self, tables=None, sweep: str | None = None) -> list:
        """The job's sweeps (those these tables are made of; or only `sweep`) with no stored points."""
        kinds = {k for t in (tables or tables_of(self.job)) for k in kinds_of_table(t)}
        wanted = [s for s in self.job.sweeps if s.kind in kinds and (sweep is None or s.name == sweep)]
        return [s for s in wanted if not sweep_files(self.store, self.job, s)]

    def check_complete(self, tables=None, sweep: str | None = None, partial: bool = False) -> None:
        """A sweep of these settings with no stored points is named with the fix (exit 2), or, with
        `partial`, named in a warning while the rest is shown."""
        self.require()
        gone = self.missing_sweeps(tables, sweep)
        if not gone:
            return
        stored = sorted({d.rsplit("/", 1)[-1] for f in self.store.list_dirs(paths.points_dir(self.dir))
                         for d in self.store.list_dirs(f)})
        names = ", ".join(f"{s.name} (sweep hash {sweep_hash(s)}, {len(s.alpha.points())} α)" for s in gone)
        text = (f"no points are stored for sweep(s) {names} of {self.job.name} with these settings "
                f"(stored sweep folders: {', '.join(stored) or 'none'}). A changed α grid or sweep setting is a new "
                f"sweep: compute it with `raysweep sweep {locator(self.job, self.store)} --sweep {gone[0].name}`, "
                f"or pass the overrides the sweep was run with")
        if not partial:
            raise MissingResults(self._words(text + "; add --partial to show what is stored without it."))
        warn(self._words(f"{text}; showing the rest (--partial)."))

    def _words(self, text: str) -> str:
        return in_python(text) if self.python else text

    def points(self) -> pl.LazyFrame:
        self.require()
        return self._guarded(lambda: scan_points(self.store, self.job, self.skip).collect()).lazy()

    def get(self, name: str, made_of: dict | None = None) -> pl.LazyFrame:
        """Table `name` as of now (see the module docstring)."""
        self.require()
        if name == "points":
            return self.points()
        made_of = made_of or inputs(self.store, self.job)
        path = paths.table(self.dir, name)
        recorded = self.store.read_json(paths.tables_inputs(self.dir)) if self.store.exists(
            paths.tables_inputs(self.dir)) else None
        if (
            isinstance(recorded, dict)
            and recorded.get("fingerprint") == made_of["fingerprint"]
            and self.store.exists(path)
        ):
            return pl.scan_pyarrow_dataset(self.store.dataset([path]))
        if name in ("curves", "barriers"):  # one read of the points rebuilds both, kept while the inputs hold
            if self._line is None or self._line[0] != made_of["fingerprint"]:
                both = self._guarded(lambda: aggregate.line_tables(self.store, self.job, self.skip))
                self._line = (made_of["fingerprint"], both)
            return self._line[1][0 if name == "curves" else 1].lazy()
        return self._guarded(lambda: aggregate.build(name, self.store, self.job, self.skip)).lazy()

    def _guarded(self, build):
        """`build()`, leaving out (and naming) points files that cannot be read."""
        try:
            return build()
        except DamagedPoints as exc:
            warn(str(exc))
            self.skip = self.skip | frozenset(exc.paths)
            return build()

    def table(self, name: str, sweep: str | None = None, partial: bool = False) -> pl.DataFrame:
        if name not in tables_of(self.job):
            raise SpecError(f"unknown table {name!r}; the tables of {self.job.name} are {list(tables_of(self.job))}")
        if sweep is not None:
            self.job.sweep(sweep)  # raises with the list of sweeps
        self.check_complete((name,), sweep, partial)
        lf = self.get(name)
        if sweep is not None:
            lf = lf.filter(pl.col("sweep") == sweep)
        return lf.collect()

    def query(self, sql: str, partial: bool = False) -> pl.DataFrame:
        """Polars SQL over every table (points, curves, barriers, checkpoints, trajectory, …)."""
        self.check_complete(partial=partial)
        made_of = inputs(self.store, self.job)
        ctx = pl.SQLContext({name: self.get(name, made_of) for name in tables_of(self.job)})
        return ctx.execute(sql, eager=True)

    def report_state(self) -> str:
        """"current" (shows what is stored now), "stale" (made from other inputs) or "none"."""
        if not self.store.exists(paths.report(self.dir)):
            return "none"
        try:
            recorded = self.store.read_json(paths.report_inputs(self.dir))["fingerprint"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return "stale"
        return "current" if recorded == inputs(self.store, self.job)["fingerprint"] else "stale"
