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
    from raysweep.sweep.compact import data_files, is_part

    run = paths.run_dir(job.name, job.hash)
    out = []
    for s in job.sweeps:
        if s.kind not in kinds:
            continue
        folder = paths.sweep_dir(run, s.kind, s.name, sweep_hash(s))
        files = store.list(folder, ".parquet")
        if any(is_part(f) for f in files):  # a compacted sweep: parts (rows filtered by replicate on read)
            files = data_files(store, folder, files)
        out += [p for p in files if within_replicates(p, job.replicates)]
    return out


def inputs(store: Store, job: Job) -> dict:
    """What the tables of a run are made of: its replicates, its sweeps' settings and every stored file
    they read (name, size, modification time). Tables and reports record it; a table whose record
    differs from the store's is stale and is rebuilt from the points instead of being returned."""
    run = paths.run_dir(job.name, job.hash)
    files = [f for s in job.sweeps for f in store.list_info(paths.sweep_dir(run, s.kind, s.name, sweep_hash(s)), ".parquet")
             if within_replicates(f[0], job.replicates)]
    files += [f for s in job.sweeps for f in store.list_info(paths.sweep_dir(run, s.kind, s.name, sweep_hash(s)), ".json")]
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
    """The line sweeps' stored rows, of the job's replicates (a compacted part may hold more)."""
    r = job.replicates
    return _scan(store, point_paths(store, job), POINT_SCHEMA).filter(
        (pl.col("replicate_a") < r) & (pl.col("replicate_b") < r))


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
    """The line sweeps' rows, only the columns the tables read (a query: nothing is loaded yet)."""
    lf = scan_points(store, job)
    names = lf.collect_schema().names()
    extra = [c for c in names if c not in POINT_SCHEMA.names]
    return lf.select(*POINT_KEY, *(["item"] if item else []), "distance", "norm_a", "loss", "error", *extra)


def _streamed(lf: pl.LazyFrame) -> pl.DataFrame:
    return lf.collect(engine="streaming")


def dedupe(points: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (sweep, pair, α, split): where the store holds a point twice (items of two
    chunkings), the row of the first item by name. Only run when duplicates exist (`_duplicates`)."""
    return (points.group_by(POINT_KEY).agg(pl.all().sort_by("item").first()))


def _duplicates(points: pl.LazyFrame) -> int:
    """Rows beyond one per point in points sorted by POINT_KEY: a duplicate has the same key as the
    row before it (no grouping, no hashing)."""
    same = pl.all_horizontal([pl.col(k).eq_missing(pl.col(k).shift()) for k in POINT_KEY])
    return int(points.select(same.sum()).collect().item() or 0)


PART_ROWS = 500_000  # rows aggregated at a time: memory stays near the narrow frame's own size


def _bounds(points: pl.DataFrame) -> list[tuple[int, int]]:
    """Ranges of step_a holding about PART_ROWS rows each. Every curve (and every (curve, α) group)
    has one step_a, so the parts aggregate apart."""
    counts = points.group_by("step_a").len().sort("step_a")
    bounds, size, lo = [], 0, None
    for step, n in counts.iter_rows():
        lo = step if lo is None else lo
        size += n
        if size >= PART_ROWS:
            bounds.append((lo, step))
            size, lo = 0, None
    if lo is not None:
        bounds.append((lo, counts["step_a"][-1]))
    return bounds


def _partitions(points: pl.DataFrame):
    """The parts of `_bounds`, each sorted by POINT_KEY, made one at a time."""
    bounds = _bounds(points)
    if len(bounds) <= 1:
        yield points.sort(POINT_KEY)
        return
    for a, b in bounds:
        yield points.filter(pl.col("step_a").is_between(a, b)).sort(POINT_KEY)


def _by_parts(points: pl.DataFrame) -> tuple[list, list] | None:
    """Curves and per-curve metrics of each part; None if some point is stored twice."""
    curve_parts, single_parts = [], []
    for part in _partitions(points):
        if _duplicates(part.lazy()):
            return None
        curve_parts.append(_curves(part.lazy()))
        single_parts.append(_per_curve(part.lazy()))
        del part
    return curve_parts, single_parts


def line_tables(store: Store, job: Job) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(curves, barriers) of the stored line points. The points are read once into a narrow frame
    (~100 bytes a row) and aggregated part by part (`_partitions`), so memory stays near the frame's
    size; re-read with item names, and de-duplicated, only if the store holds a point twice."""
    points = _streamed(line_points(store, job))
    done = _by_parts(points)
    if done is None:
        del points
        deduped = _streamed(dedupe(line_points(store, job, item=True)).drop("item"))
        log.warning("found %d duplicate point rows; kept one of each",
                    _streamed(line_points(store, job).select(pl.len())).item() - deduped.height)
        done = _by_parts(deduped)
    curve_parts, single_parts = done
    empty = _sorted(pl.from_arrow(POINT_SCHEMA.empty_table()))
    curves_ = pl.concat(curve_parts).sort(CURVE_KEY + ["alpha"]) if curve_parts else _curves(empty)
    single = pl.concat(single_parts).sort(PAIR_KEY + ["metric"]) if single_parts else _per_curve(empty)
    return curves_, _barriers_of(single)


def _mean_std(e: pl.Expr, name: str) -> list[pl.Expr]:
    """Mean and sample std (ddof = 1; null for n < 2). Groups keep the frame's row order, and the
    frames are sorted by point (or pair) first, so every sum adds the same numbers in the same
    order whatever order the files were read in: a resumed run's tables are bitwise the same."""
    x = e.drop_nulls()
    n = x.count()
    mean = x.sum() / n
    std = pl.when(n > 1).then((((x - mean) ** 2).sum() / (n - 1)).sqrt())
    return [pl.when(n > 0).then(mean).alias(f"{name}_mean"), std.alias(f"{name}_std")]


def _sorted(points: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Points sorted by POINT_KEY, materialised: a lazy sort in front of a group-by is dropped by
    Polars' optimiser (it treats group sums as order-free), a sorted frame is not."""
    return points.lazy().sort(POINT_KEY).collect().lazy()


def _curves(points: pl.LazyFrame) -> pl.DataFrame:
    """curves() of points already sorted by POINT_KEY."""
    aggs = [e for m in measures(points.collect_schema()) for e in _mean_std(pl.col(m), m)]
    out = (points.group_by(CURVE_KEY + ["alpha"]).agg(*aggs, pl.len().cast(pl.UInt32).alias("n"))
           .with_columns(pl.col("step_a").alias("step")).collect())
    return _strings(out).sort(CURVE_KEY + ["alpha"])


def curves(points: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Mean, std and n across replicates per sweep, step pair, α and split."""
    return _curves(_sorted(points))


def _strings(df: pl.DataFrame) -> pl.DataFrame:
    """Tables keep sweep and split as plain strings, whatever type a caller's frame gave them."""
    return df.with_columns(pl.col("sweep", "split").cast(pl.String))


def _metric_exprs(m: str) -> list[pl.Expr]:
    """metrics.curve_metrics as group expressions over one curve (analysis.metrics' one rule):
    α in [0, 1] only; NaN there makes every metric NaN. The rows are in α order (points sorted
    by POINT_KEY, which orders α within a pair; groups keep row order)."""
    a = pl.col("alpha")
    inside = (a >= -1e-9) & (a <= 1 + 1e-9)
    v = pl.col(m).filter(inside)
    x = a.filter(inside)
    l0 = pl.col(m).filter(a.abs() <= 1e-9).first()
    l1 = pl.col(m).filter((a - 1).abs() <= 1e-9).first()
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
    return _per_curve(_sorted(points))


def _per_curve(lf: pl.LazyFrame) -> pl.DataFrame:
    """per_curve() of points already sorted by POINT_KEY."""
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
    out = _strings(pl.concat(parts).collect())
    return out.with_columns(pl.col(c).cast(pl.Float64) for c in METRICS).sort(PAIR_KEY + ["metric"])


def barriers(points: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per sweep, step pair, split and metric: each curve metric as mean ± std across replicates."""
    return _barriers(_sorted(points))


def _barriers(points: pl.LazyFrame) -> pl.DataFrame:
    return _barriers_of(_per_curve(points))


def _barriers_of(single: pl.DataFrame) -> pl.DataFrame:
    """Barriers from the per-curve table, sorted by pair then metric: each group's rows in replicate order."""
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
        curves_, barriers_ = line_tables(store, job)
        return curves_ if name == "curves" else barriers_
    if name == "points":
        return scan_points(store, job).collect()
    return {"checkpoints": checkpoints, "trajectory": trajectory, "function_map": function_map,
            "surface": surface}[name](store, job)


def aggregate(store: Store, job: Job) -> dict[str, pl.DataFrame]:
    """Build and store every table, with the record of what made them; returns them."""
    made_of = inputs(store, job)  # before reading: a file that lands meanwhile makes the tables stale
    curves_, barriers_ = line_tables(store, job)
    tables = {"curves": curves_, "barriers": barriers_, "checkpoints": checkpoints(store, job),
              "trajectory": trajectory(store, job), "function_map": function_map(store, job),
              "surface": surface(store, job)}
    run = paths.run_dir(job.name, job.hash)
    store.delete(paths.tables_inputs(run))  # no record while the tables are half-written
    for name, df in tables.items():
        store.write_table(paths.table(run, name), df.to_arrow())
    store.write_json(paths.tables_inputs(run), made_of)
    return tables
