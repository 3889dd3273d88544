"""Reading stored points: which files hold a job's sweeps (item files and compacted parts, of its
replicates), what the tables are made of (their inputs' fingerprint), and the rows themselves —
with files that cannot be read found and named instead of ending the read."""
from __future__ import annotations

import hashlib
import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.errors import DamagedPoints
from raysweep.io import paths
from raysweep.io.runs import locator
from raysweep.io.schemas import POINT_SCHEMA
from raysweep.io.store import Store
from raysweep.spec import Job, sweep_hash
from raysweep.work.items import key_replicates
from raysweep.work.kinds import all_kinds, kind, of_table, sharpness_folder, sweep_folder
from raysweep.work.stored import data_files

TABLES = paths.TABLES
# The tables' own layout: part of what they are made of, so that tables an older raysweep stored (without the
# columns of this one: planned/complete, barrier_linear first) are rebuilt, never shown as they were.
TABLES_VERSION = 2
READ_ERRORS = (pl.exceptions.PolarsError, pa.ArrowException, OSError)  # what an unreadable Parquet file raises


def kinds_of_table(table: str) -> tuple[str, ...]:
    return of_table(table)


def tables_of(job: Job) -> tuple[str, ...]:
    """Every table of the job: the built-in ones (TABLES), then those its plugin kinds' sweeps feed."""
    extra = [kind(s.kind).table for s in job.sweeps if kind(s.kind).table not in TABLES]
    return TABLES + tuple(dict.fromkeys(extra))


def schema_of(table: str):
    """The row schema of a table made of a kind's stored rows (the first kind that feeds it)."""
    return next(k.schema for k in all_kinds().values() if k.table == table)


def within_replicates(path: str, replicates: int) -> bool:
    """Whether a points file (named by its item key: r<k>-...__r<j>-...) uses only replicates < `replicates`."""
    return all(k < replicates for k in key_replicates(path))


def sweep_files(store: Store, job: Job, sweep) -> list[str]:
    """The files that hold a sweep's points as declared now (its sweep hash), each point once
    (committed parts, and item files no part lists), of the job's replicates only (a run grown to
    more replicates keeps the others' files; a compacted part's rows are filtered on read)."""
    return [p for p in data_files(store, sweep_folder(paths.run_dir(job.name, job.hash), sweep))
            if within_replicates(p, job.replicates)]


def point_paths(store: Store, job: Job, kinds=None, exclude=frozenset()) -> list[str]:
    """Stored files of the job's sweeps of these kinds (by default those of the curves table: the lines' and
    curves', the points table's), less `exclude` (files known to be unreadable)."""
    kinds = of_table("curves") if kinds is None else kinds
    return [p for s in job.sweeps if s.kind in kinds for p in sweep_files(store, job, s) if p not in exclude]


def sharpness_files(store: Store, job: Job, exclude=frozenset()) -> list[str]:
    """Stored sharpness items of the job's line sweeps that ask for them, of the job's replicates."""
    run = paths.run_dir(job.name, job.hash)
    return [p for s in job.sweeps if s.sharpness.on for p in data_files(store, sharpness_folder(run, s))
            if within_replicates(p, job.replicates) and p not in exclude]


def inputs(store: Store, job: Job) -> dict:
    """What the tables of a run are made of: its replicates, its sweeps' settings and every stored file
    they read (name, size, modification time). Tables and reports record it; a table whose record
    differs from the store's is stale and is rebuilt from the points instead of being returned."""
    run = paths.run_dir(job.name, job.hash)
    files = []
    for s in job.sweeps:
        folder = sweep_folder(run, s)
        files += [f for f in store.list_info(folder, paths.PARQUET) if within_replicates(f[0], job.replicates)]
        files += store.list_info(folder, paths.JSON)
        if s.sharpness.on:
            files += store.list_info(sharpness_folder(run, s), paths.PARQUET)
    for k in range(job.replicates):
        files += store.list_info(paths.replicate_dir(run, k), paths.JSON)
    sweeps = [{"name": s.name, "kind": s.kind, "hash": sweep_hash(s)} for s in job.sweeps]
    payload = json.dumps({"hash": job.hash, "replicates": job.replicates, "sweeps": sweeps, "files": files,
                          **({"tables": TABLES_VERSION} if TABLES_VERSION > 1 else {})})
    return {"fingerprint": hashlib.sha256(payload.encode()).hexdigest()[:16], "job": job.name, "hash": job.hash,
            "replicates": job.replicates, "sweeps": sweeps, "files": len(files)}


def scan(store: Store, files: list[str], schema) -> pl.LazyFrame:
    """All rows of these files; each sweep folder has one schema (its extra metric columns), so the
    folders are scanned apart and stacked, missing columns null. Local stores are read by Polars'
    own Parquet reader (projection and streaming; tens of thousands of files in seconds), object
    stores through the Store's pyarrow filesystem (its endpoint, region and credentials)."""
    if not files:
        return pl.from_arrow(schema.empty_table()).lazy()
    folders: dict[str, list[str]] = {}
    for f in files:
        folders.setdefault(f.rsplit("/", 1)[0], []).append(f)
    if store.is_local:
        parts = [pl.scan_parquet([store.full(f) for f in group]) for group in folders.values()]
    else:
        parts = [pl.scan_pyarrow_dataset(store.dataset(group)) for group in folders.values()]
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")


def damaged_files(store: Store, files: list[str], thorough: bool = False) -> list[str]:
    """The files that cannot be read. A quick pass reads every footer at once; only if it fails (or
    with `thorough`: a data page may be damaged under a good footer) is each file read in full."""
    if not files:
        return []
    if not thorough:
        try:
            scan(store, files, POINT_SCHEMA).select(pl.len()).collect()
            return []
        except READ_ERRORS:
            pass
    bad = []
    for f in files:
        try:
            with store.fs.open_input_file(store.full(f)) as handle:
                pq.ParquetFile(handle).read()
        except READ_ERRORS:
            bad.append(f)
    return bad


def read_or_name(store: Store, job: Job, files: list[str], compute):
    """`compute()`, which reads `files`; if a read fails, the files that cannot be read are found and
    raised as DamagedPoints (callers leave them out or evaluate them again)."""
    try:
        return compute()
    except READ_ERRORS:
        bad = damaged_files(store, files, thorough=True)
        if not bad:
            raise
        raise DamagedPoints(bad, locator(job, store), store.url(paths.run_dir(job.name, job.hash))) from None


def measures(schema) -> list[str]:
    """loss, error, and every extra metric column a sweep recorded (its `metrics`), from a frame's
    columns or schema."""
    names = schema.names() if hasattr(schema, "names") else list(schema.columns)
    return ["loss", "error"] + [c for c in names if c not in POINT_SCHEMA.names]


def scan_points(store: Store, job: Job, exclude=frozenset()) -> pl.LazyFrame:
    """The line sweeps' stored rows, of the job's replicates (a compacted part may hold more)."""
    r = job.replicates
    return scan(store, point_paths(store, job, exclude=exclude), POINT_SCHEMA).filter(
        (pl.col("replicate_a") < r) & (pl.col("replicate_b") < r))
