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


def measures(schema) -> list[str]:
    """loss, error, and every extra metric column a sweep recorded (its `metrics`), from a frame's
    columns or schema."""
    names = schema.names() if hasattr(schema, "names") else list(schema.columns)
    return ["loss", "error"] + [c for c in names if c not in POINT_SCHEMA.names]


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


def line_points(store: Store, job: Job, item: bool = False) -> pl.LazyFrame:
    """The line sweeps' rows, only the columns the tables read (a query: nothing is loaded yet);
    sweep and split as categories (a few bytes a row)."""
    lf = scan_points(store, job)
    names = lf.collect_schema().names()
    extra = [c for c in names if c not in POINT_SCHEMA.names]
    return lf.select(*POINT_KEY, *(["item"] if item else []), "distance", "norm_a", "loss", "error", *extra).with_columns(
        pl.col("sweep").cast(pl.Categorical), pl.col("split").cast(pl.Categorical))


def _streamed(lf: pl.LazyFrame) -> pl.DataFrame:
    return lf.collect(engine="streaming")


def dedupe(points: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (sweep, pair, α, split): where the store holds a point twice (items of two
    chunkings), the row of the first item by name. Only run when duplicates exist (`_duplicates`)."""
    return (points.group_by(POINT_KEY).agg(pl.all().sort_by("item").first()))


def _duplicates(points: pl.LazyFrame) -> int:
    """Rows beyond one per point, counted per (curve, α) group from its pairs: no full-size sort."""
    pairs = pl.struct("replicate_a", "replicate_b")
    counts = _streamed(points.group_by(CURVE_KEY + ["alpha"]).agg(pl.len().alias("rows"), pairs.n_unique().alias("pairs"))
                       .select((pl.col("rows") - pl.col("pairs")).sum()))
    return int(counts.item() or 0)


def _deduped(store: Store, job: Job) -> tuple[pl.LazyFrame, list[str]]:
    """The line points, read once into a narrow frame (~80 bytes a row: 5M rows in ~0.4 GB) that
    every table is computed from; re-read with item names, and de-duplicated, only if the store
    holds a point twice."""
    points = _streamed(line_points(store, job)).lazy()
    dup = _duplicates(points)
    if dup:
        log.warning("found %d duplicate point rows; kept one of each", dup)
        points = _streamed(dedupe(line_points(store, job, item=True)).drop("item")).lazy()
    names = measures(points.collect_schema())
    return points, names


def _by_pair(e: pl.Expr) -> pl.Expr:
    """Within a group, values in a fixed order (replicate pairs): sums do not depend on how the
    files were read, so a resumed run gives bitwise the same tables."""
    return e.sort_by("replicate_a", "replicate_b")


def _mean_std(e: pl.Expr, name: str) -> list[pl.Expr]:
    """Mean and sample std (ddof = 1; null for n < 2), summed left to right in pair order: the same
    bits whatever order the rows were read in. (A cumulative sum keeps that order: polars drops a sort
    in front of a plain sum, which it treats as order-free.)"""
    x = _by_pair(e).drop_nulls()
    n = x.count()
    mean = x.cum_sum().last() / n
    std = pl.when(n > 1).then((((x - mean) ** 2).cum_sum().last() / (n - 1)).sqrt())
    return [mean.alias(f"{name}_mean"), std.alias(f"{name}_std")]


def curves_query(points: pl.LazyFrame, names: list[str]) -> pl.LazyFrame:
    aggs = [e for m in names for e in _mean_std(pl.col(m), m)]
    return (points.group_by(CURVE_KEY + ["alpha"]).agg(*aggs, pl.len().cast(pl.UInt32).alias("n"))
            .with_columns(pl.col("step_a").alias("step")))


def curves(points: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Mean, std and n across replicates per sweep, step pair, α and split."""
    lf = points.lazy()
    return _strings(_streamed(curves_query(lf, measures(lf.collect_schema())))).sort(CURVE_KEY + ["alpha"])


def _strings(df: pl.DataFrame) -> pl.DataFrame:
    """Tables keep sweep and split as plain strings (the points are read as categories)."""
    return df.with_columns(pl.col("sweep", "split").cast(pl.String))


def _metric_exprs(m: str) -> list[pl.Expr]:
    """metrics.curve_metrics as group expressions over one curve (analysis.metrics' one rule):
    α in [0, 1] only, sorted by α; NaN there makes every metric NaN."""
    a = pl.col("alpha").sort()
    inside = (a >= -1e-9) & (a <= 1 + 1e-9)
    v = pl.col(m).sort_by("alpha").filter(inside)
    x = a.filter(inside)
    l0 = pl.col(m).sort_by("alpha").filter(a.abs() <= 1e-9).first()
    l1 = pl.col(m).sort_by("alpha").filter((a - 1).abs() <= 1e-9).first()
    rise = (v - v.cum_min()).max()
    return [v.len().alias("_n"), v.is_nan().any().alias("_nan"), l0.alias("_l0"), l1.alias("_l1"),
            rise.alias("max_increase"), (v - ((1 - x) * l0 + x * l1)).max().alias("barrier_linear"),
            (v.max() - 0.5 * (l0 + l1)).alias("barrier_mean"), (v.diff() <= 0).all().alias("monotone"),
            # Lucas et al.'s Δ: the largest bump starts at the minimum before its peak, so on a sampled
            # curve it is the largest rise (metrics.max_bump computes it bump by bump; they agree)
            rise.alias("max_bump"), pl.col(m).is_not_null().any().alias("_recorded")]


def per_curve(points: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Metrics of every single curve (one replicate or pair), for loss and for error (and each
    extra metric a sweep recorded), one group operation per metric over the stored points."""
    lf = points.lazy()
    names = measures(lf.collect_schema())
    nan, null = pl.lit(float("nan")), pl.lit(None, dtype=pl.Float64)
    bad = pl.col("_nan") | (pl.col("_n") == 0)
    ends = pl.col("_l0").is_not_null() & pl.col("_l1").is_not_null()
    parts = []
    for m in names:
        q = (lf.group_by(PAIR_KEY).agg(*_metric_exprs(m), pl.col("distance").first(), pl.col("norm_a").first())
             .filter(pl.col("_recorded") | pl.lit(m in ("loss", "error")))
             .with_columns(
                 pl.when(bad).then(nan).otherwise(pl.col("max_increase")).alias("max_increase"),
                 pl.when(bad).then(nan).otherwise(pl.col("max_bump")).alias("max_bump"),
                 *[pl.when(~ends).then(null).when(bad).then(nan).otherwise(pl.col(c)).alias(c)
                   for c in ("barrier_linear", "barrier_mean")],
                 pl.when(bad).then(pl.lit(None, dtype=pl.Boolean)).otherwise(pl.col("monotone")).alias("monotone"),
                 pl.lit(m).alias("metric"),
                 pl.when(pl.col("norm_a").is_not_null() & (pl.col("norm_a") != 0))
                 .then(pl.col("distance") / pl.col("norm_a")).otherwise(null).alias("relative_distance"))
             .select(*PAIR_KEY, "metric", *METRICS, "monotone", "distance", "relative_distance"))
        parts.append(q)
    out = _strings(_streamed(pl.concat(parts)))
    return out.with_columns(pl.col(c).cast(pl.Float64) for c in METRICS).sort(PAIR_KEY + ["metric"])


def barriers(points: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per sweep, step pair, split and metric: each curve metric as mean ± std across replicates."""
    single = per_curve(points)
    aggs = []
    for m in METRICS + ["distance", "relative_distance"]:
        aggs += _mean_std(pl.col(m), m)
    aggs += [pl.col("monotone").cast(pl.Float64).mean().alias("monotone_fraction"), pl.len().cast(pl.UInt32).alias("n")]
    return (single.lazy().group_by(CURVE_KEY + ["metric"]).agg(aggs)
            .with_columns(pl.col("step_a").alias("step"))
            .sort(CURVE_KEY + ["metric"]).collect())


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
        points, _ = _deduped(store, job)
        return curves(points) if name == "curves" else barriers(points)
    if name == "points":
        return scan_points(store, job).collect()
    return {"checkpoints": checkpoints, "trajectory": trajectory, "function_map": function_map,
            "surface": surface}[name](store, job)


def aggregate(store: Store, job: Job) -> dict[str, pl.DataFrame]:
    """Build and store every table, with the record of what made them; returns them."""
    made_of = inputs(store, job)  # before reading: a file that lands meanwhile makes the tables stale
    points, _ = _deduped(store, job)
    tables = {"curves": curves(points), "barriers": barriers(points), "checkpoints": checkpoints(store, job),
              "trajectory": trajectory(store, job), "function_map": function_map(store, job),
              "surface": surface(store, job)}
    run = paths.run_dir(job.name, job.hash)
    store.delete(paths.tables_inputs(run))  # no record while the tables are half-written
    for name, df in tables.items():
        store.write_table(paths.table(run, name), df.to_arrow())
    store.write_json(paths.tables_inputs(run), made_of)
    return tables
