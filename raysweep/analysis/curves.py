"""The curve arithmetic, Polars only: mean ± std across replicates per (sweep, step pair, α, split)
(curves), each curve's metrics (per_curve) and their mean ± std (barriers), in bounded memory and in
a fixed order, so every sum adds the same numbers in the same order whatever order the files were
read in.

Std is the sample standard deviation (ddof = 1) across replicates (or replicate pairs for
final_to_final sweeps); it is null when n = 1.
"""
from __future__ import annotations

import polars as pl

from raysweep.analysis.scan import measures

POINT_KEY = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "alpha", "split"]
CURVE_KEY = ["sweep", "step_a", "step_b", "split"]
PAIR_KEY = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "split"]
# what the papers call a barrier first: the rise above the endpoint line (linear mode connectivity), then F's
# max increase (monotonicity), the peak over the ends' mean (Frankle et al. 2020's instability), Lucas et al.'s bump
METRICS = ["barrier_linear", "max_increase", "peak_over_ends", "max_bump"]


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
    """The parts of `_bounds`, each sorted by POINT_KEY, made one at a time. Filtered through the lazy
    engine: an eager DataFrame.filter of a frame read from many files copies the whole frame into one
    chunk first (Polars 2: +0.5 GB at 5M rows), the lazy one reads only the part's rows."""
    bounds = _bounds(points)
    if len(bounds) <= 1:
        yield points.lazy().sort(POINT_KEY).collect()
        return
    for a, b in bounds:
        yield points.lazy().filter(pl.col("step_a").is_between(a, b)).sort(POINT_KEY).collect()


def by_parts(points: pl.DataFrame) -> tuple[list, list] | None:
    """Curves and per-curve metrics of each part; None if some point is stored twice."""
    curve_parts, single_parts = [], []
    for part in _partitions(points):
        if _duplicates(part.lazy()):
            return None
        curve_parts.append(curves_sorted(part.lazy()))
        single_parts.append(per_curve_sorted(part.lazy()))
        del part
    return curve_parts, single_parts


def _mean_std(e: pl.Expr, name: str) -> list[pl.Expr]:
    """Mean and sample std (ddof = 1; null for n < 2). Groups keep the frame's row order, and the
    frames are sorted by point (or pair) first, so every sum adds the same numbers in the same
    order whatever order the files were read in: a resumed run's tables are bitwise the same."""
    x = e.drop_nulls()
    n = x.count()
    mean = x.sum() / n
    std = pl.when(n > 1).then((((x - mean) ** 2).sum() / (n - 1)).sqrt())
    return [pl.when(n > 0).then(mean).alias(f"{name}_mean"), std.alias(f"{name}_std")]


def sorted_points(points: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Points sorted by POINT_KEY, materialised: a lazy sort in front of a group-by is dropped by
    Polars' optimiser (it treats group sums as order-free), a sorted frame is not."""
    return points.lazy().sort(POINT_KEY).collect().lazy()


def curves_sorted(points: pl.LazyFrame) -> pl.DataFrame:
    """curves() of points already sorted by POINT_KEY."""
    aggs = [e for m in measures(points.collect_schema()) for e in _mean_std(pl.col(m), m)]
    out = (points.group_by(CURVE_KEY + ["alpha"]).agg(*aggs, pl.len().cast(pl.UInt32).alias("n"))
           .with_columns(pl.col("step_a").alias("step")).collect())
    return _strings(out).sort(CURVE_KEY + ["alpha"])


def curves(points: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Mean, std and n across replicates per sweep, step pair, α and split."""
    return curves_sorted(sorted_points(points))


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
            (v.max() - 0.5 * (l0 + l1)).alias("peak_over_ends"), (v.diff() <= 0).all().alias("monotone"),
            # Lucas et al.'s Δ: the largest bump starts at the minimum before its peak, so on a sampled
            # curve it is the largest rise (metrics.max_bump computes it bump by bump; they agree)
            rise.alias("max_bump"), pl.col(m).is_not_null().any().alias("_recorded")]


def per_curve(points: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Metrics of every single curve (one replicate or pair), for loss and for error (and each
    extra metric a sweep recorded), one group operation per metric over the stored points."""
    return per_curve_sorted(sorted_points(points))


def per_curve_sorted(lf: pl.LazyFrame) -> pl.DataFrame:
    """per_curve() of points already sorted by POINT_KEY."""
    # a standard error is a point's uncertainty, not a quantity along the line: no barrier of it
    names = [m for m in measures(lf.collect_schema()) if m != "error_se"]
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
                   for c in ("barrier_linear", "peak_over_ends")],
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
    return _barriers(sorted_points(points))


def _barriers(points: pl.LazyFrame) -> pl.DataFrame:
    return barriers_of(per_curve_sorted(points))


def barriers_of(single: pl.DataFrame) -> pl.DataFrame:
    """Barriers from the per-curve table, sorted by pair then metric: each group's rows in replicate order."""
    aggs = []
    for m in METRICS + ["distance", "relative_distance"]:
        aggs += _mean_std(pl.col(m), m)
    aggs += [pl.col("monotone").cast(pl.Float64).mean().alias("monotone_fraction"), pl.len().cast(pl.UInt32).alias("n")]
    return (single.lazy().group_by(CURVE_KEY + ["metric"]).agg(aggs)
            .with_columns(pl.col("step_a").alias("step"))
            .sort(CURVE_KEY + ["metric"]).collect())
