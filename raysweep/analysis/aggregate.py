"""Polars: stored points -> curves (mean ± std across replicates), barriers, checkpoints.

Std is the sample standard deviation (ddof = 1) across replicates (or replicate pairs for
final_to_final sweeps); it is null when n = 1.
"""
from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import polars as pl

from raysweep.io import paths
from raysweep.analysis.metrics import curve_metrics
from raysweep.spec import LINE_KINDS, PLANE_KINDS, Job, sweep_hash
from raysweep.io.store import Store
from raysweep.sweep import POINT_SCHEMA

log = logging.getLogger("raysweep")
POINT_KEY = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "alpha", "split"]
CURVE_KEY = ["sweep", "step_a", "step_b", "split"]
PAIR_KEY = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "split"]
METRICS = ["max_increase", "barrier_linear", "barrier_mean", "max_bump"]
TABLES = paths.TABLES


def within_replicates(path: str, replicates: int) -> bool:
    """Whether a points file (named by its item key: r<k>-...__r<j>-...) uses only replicates < `replicates`."""
    from raysweep.sweep.items import key_replicates

    return all(k < replicates for k in key_replicates(path))


def point_paths(store: Store, job: Job, kinds=LINE_KINDS) -> list[str]:
    """Stored files of the job's sweeps of these kinds, as declared now (current sweep hashes),
    of the job's replicates only (a run grown to more replicates keeps the others' files)."""
    run = paths.run_dir(job.name, job.hash)
    return [p for s in job.sweeps if s.kind in kinds
            for p in store.list(paths.sweep_dir(run, s.kind, s.name, sweep_hash(s)), ".parquet")
            if within_replicates(p, job.replicates)]


def inputs(store: Store, job: Job) -> dict:
    """What the tables of a run are made of: its replicates, its sweeps' settings and every stored file
    they read (name, size, modification time). Tables and reports record it; a table whose record
    differs from the store's is stale and is rebuilt from the points instead of being returned."""
    run = paths.run_dir(job.name, job.hash)
    files = [f for s in job.sweeps for f in store.list_info(paths.sweep_dir(run, s.kind, s.name, sweep_hash(s)), ".parquet")
             if within_replicates(f[0], job.replicates)]
    for k in range(job.replicates):
        files += store.list_info(paths.replicate_dir(run, k), ".json")
    sweeps = [{"name": s.name, "kind": s.kind, "hash": sweep_hash(s)} for s in job.sweeps]
    payload = json.dumps({"hash": job.hash, "replicates": job.replicates, "sweeps": sweeps, "files": files})
    return {"fingerprint": hashlib.sha256(payload.encode()).hexdigest()[:16], "job": job.name, "hash": job.hash,
            "replicates": job.replicates, "sweeps": sweeps, "files": len(files)}


def _scan(store: Store, files: list[str], schema) -> pl.LazyFrame:
    """All rows of these files; each sweep folder has one schema (its extra metric columns), so the
    folders are scanned apart and stacked, missing columns null."""
    if not files:
        return pl.from_arrow(schema.empty_table()).lazy()
    folders: dict[str, list[str]] = {}
    for f in files:
        folders.setdefault(f.rsplit("/", 1)[0], []).append(f)
    parts = [pl.scan_pyarrow_dataset(store.dataset(group)) for group in folders.values()]
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")


def measures(points: pl.DataFrame) -> list[str]:
    """loss, error, and every extra metric column a sweep recorded (its `metrics`)."""
    from raysweep.sweep import POINT_SCHEMA

    return ["loss", "error"] + [c for c in points.columns if c not in POINT_SCHEMA.names]


def scan_points(store: Store, job: Job) -> pl.LazyFrame:
    return _scan(store, point_paths(store, job), POINT_SCHEMA)


def trajectory(store: Store, job: Job) -> pl.DataFrame:
    """T2: α(t), β(t), ‖θ_t‖ per replicate and step, with the residual's share of the norm."""
    from raysweep.evaluate.trajectory import TRAJECTORY_SCHEMA

    df = _scan(store, point_paths(store, job, ("projection",)), TRAJECTORY_SCHEMA).collect()
    return (df.with_columns(residual_fraction=pl.col("beta") / pl.col("norm"),
                            max_beta_over_max_norm=(pl.col("beta").max() / pl.col("norm").max()).over("sweep", "replicate"))
            .sort("sweep", "replicate", "step"))


def surface(store: Store, job: Job) -> pl.DataFrame:
    """T4/T5: loss and error on each replicate's (a, b) grid (kind "grid") and the projected
    SGD path (kind "path", one row per checkpoint)."""
    from raysweep.evaluate.planes import SURFACE_SCHEMA

    df = _scan(store, point_paths(store, job, PLANE_KINDS), SURFACE_SCHEMA).collect()
    return df.unique(subset=["sweep", "replicate", "kind", "step", "a", "b", "split"], keep="first").sort(
        "sweep", "replicate", "kind", "step", "a", "b", "split")


def function_map(store: Store, job: Job) -> pl.DataFrame:
    """T6: every replicate at every checkpoint, τ and κ embedded jointly in 2-D by metric MDS."""
    from raysweep.analysis.mds import mds_maps
    from raysweep.evaluate.trajectory import FUNCTION_SCHEMA

    df = _scan(store, point_paths(store, job, ("function_map",)), FUNCTION_SCHEMA).collect()
    out = []
    for (sweep,), part in df.sort("replicate", "step").group_by("sweep", maintain_order=True):
        tau = np.stack(part["tau"].to_numpy()).astype(np.float64)
        kappa = np.stack(part["kappa"].to_numpy())
        xy_tau, xy_kappa = mds_maps(tau, kappa)
        out.append(part.select("sweep", "replicate", "step").with_columns(
            tau_x=xy_tau[:, 0], tau_y=xy_tau[:, 1], kappa_x=xy_kappa[:, 0], kappa_y=xy_kappa[:, 1]))
    if not out:
        return pl.DataFrame(schema={"sweep": pl.String, "replicate": pl.Int32, "step": pl.Int64, "epoch": pl.Float64,
                                    "tau_x": pl.Float64, "tau_y": pl.Float64, "kappa_x": pl.Float64,
                                    "kappa_y": pl.Float64})
    epochs = checkpoints(store, job).select(pl.col("replicate").cast(pl.Int32), "step", "epoch")
    return pl.concat(out).join(epochs, on=["replicate", "step"], how="left").select(
        "sweep", "replicate", "step", "epoch", "tau_x", "tau_y", "kappa_x", "kappa_y")


def dedupe(points: pl.DataFrame) -> pl.DataFrame:
    """One row per (sweep, pair, α, split), sorted by that key; says so if the store ever held a
    duplicate. Sorting first fixes the order of every later reduction, so a run resumed after a
    kill gives bitwise the same tables as one that never stopped."""
    points = points.sort(POINT_KEY + ["item"])
    unique = points.unique(subset=POINT_KEY, keep="first", maintain_order=True)
    if unique.height != points.height:
        log.warning("found %d duplicate point rows; kept one of each", points.height - unique.height)
    return unique


def curves(points: pl.DataFrame) -> pl.DataFrame:
    """Mean, std and n across replicates per sweep, step pair, α and split."""
    aggs = [e for m in measures(points) for e in (pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std().alias(f"{m}_std"))]
    return (points.sort(POINT_KEY).group_by(CURVE_KEY + ["alpha"], maintain_order=True)
            .agg(*aggs, pl.len().alias("n"))
            .with_columns(pl.col("step_a").alias("step"))
            .sort(CURVE_KEY + ["alpha"]))


def per_curve(points: pl.DataFrame) -> pl.DataFrame:
    """Metrics of every single curve (one replicate or pair), for loss and for error."""
    names = measures(points)
    lists = (points.sort(PAIR_KEY + ["alpha"]).group_by(PAIR_KEY, maintain_order=True)
             .agg("alpha", *names, pl.col("distance").first(), pl.col("norm_a").first()))
    rows = []
    for r in lists.iter_rows(named=True):
        for metric in names:
            if metric not in ("loss", "error") and all(v is None for v in r[metric]):
                continue  # a metric another sweep recorded
            rows.append({**{k: r[k] for k in PAIR_KEY}, "metric": metric,
                         **curve_metrics(r["alpha"], r[metric]), "distance": r["distance"],
                         "relative_distance": r["distance"] / r["norm_a"] if r["norm_a"] else None})
    schema = {**{k: points.schema[k] for k in PAIR_KEY}, "metric": pl.String,
              **{m: pl.Float64 for m in METRICS}, "monotone": pl.Boolean,
              "distance": pl.Float64, "relative_distance": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def barriers(points: pl.DataFrame) -> pl.DataFrame:
    """Per sweep, step pair, split and metric: each curve metric as mean ± std across replicates."""
    single = per_curve(points)
    aggs = []
    for m in METRICS + ["distance", "relative_distance"]:
        aggs += [pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std().alias(f"{m}_std")]
    aggs += [pl.col("monotone").cast(pl.Float64).mean().alias("monotone_fraction"), pl.len().alias("n")]
    single = single.sort(CURVE_KEY + ["metric", "replicate_a", "replicate_b"])
    return (single.group_by(CURVE_KEY + ["metric"], maintain_order=True).agg(aggs)
            .with_columns(pl.col("step_a").alias("step"))
            .sort(CURVE_KEY + ["metric"]))


def checkpoints(store: Store, job: Job) -> pl.DataFrame:
    """The manifests of every stored checkpoint: the learning curves (T1)."""
    from raysweep.sweep import read_manifests

    run = paths.run_dir(job.name, job.hash)
    ks = sorted(int(p.rsplit("_", 1)[-1]) for p in store.list_dirs(run) if "/replicate_" in p)
    rows = [m for k in ks if k < job.replicates for m in read_manifests(store, job, k).values()]
    if not rows:
        return pl.DataFrame(schema={"replicate": pl.Int64, "step": pl.Int64, "epoch": pl.Float64})
    df = pl.DataFrame(rows, infer_schema_length=None)
    # a column no manifest fills (epoch of external checkpoints) is a float column of nulls, not "Null"
    return df.with_columns(pl.col(c).cast(pl.Float64) for c, t in df.schema.items() if t == pl.Null).sort(
        "replicate", "step")


def build(name: str, store: Store, job: Job) -> pl.DataFrame:
    """One table, computed now from what is stored."""
    if name in ("curves", "barriers"):
        points = dedupe(scan_points(store, job).collect())
        return curves(points) if name == "curves" else barriers(points)
    if name == "points":
        return scan_points(store, job).collect()
    return {"checkpoints": checkpoints, "trajectory": trajectory, "function_map": function_map,
            "surface": surface}[name](store, job)


def aggregate(store: Store, job: Job) -> dict[str, pl.DataFrame]:
    """Build and store every table, with the record of what made them; returns them."""
    made_of = inputs(store, job)  # before reading: a file that lands meanwhile makes the tables stale
    points = dedupe(scan_points(store, job).collect())
    tables = {"curves": curves(points), "barriers": barriers(points), "checkpoints": checkpoints(store, job),
              "trajectory": trajectory(store, job), "function_map": function_map(store, job),
              "surface": surface(store, job)}
    run = paths.run_dir(job.name, job.hash)
    store.delete(paths.tables_inputs(run))  # no record while the tables are half-written
    for name, df in tables.items():
        store.write_table(paths.table(run, name), df.to_arrow())
    store.write_json(paths.tables_inputs(run), made_of)
    return tables
