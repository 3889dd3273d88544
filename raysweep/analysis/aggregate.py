"""Polars: stored points -> the run's tables (curves, barriers, checkpoints, trajectory,
function_map, surface), built from what is stored and recorded with what made them."""
from __future__ import annotations

import logging

import numpy as np
import polars as pl

from raysweep.analysis.curves import (
    CURVE_KEY,
    PAIR_KEY,
    POINT_KEY,
    barriers_of,
    by_parts,
    curves_sorted,
    dedupe,
    per_curve_sorted,
    sorted_points,
)
from raysweep.analysis.mds import mds_maps
from raysweep.analysis.scan import (
    inputs,
    point_paths,
    read_or_name,
    scan,
    scan_points,
    schema_of,
    sharpness_files,
)
from raysweep.io import paths
from raysweep.io.manifests import read_manifests
from raysweep.io.schemas import (
    FUNCTION_SCHEMA,
    MERGE_SCHEMA,
    POINT_SCHEMA,
    PROVENANCE,
    SHARPNESS_SCHEMA,
    SURFACE_SCHEMA,
    TRAJECTORY_SCHEMA,
)
from raysweep.io.store import Store
from raysweep.spec import Job
from raysweep.work.kinds import all_kinds, of_table

log = logging.getLogger("raysweep")


def _read(store: Store, job: Job, kinds, schema, exclude) -> pl.DataFrame:
    files = point_paths(store, job, kinds, exclude)
    return read_or_name(store, job, files, lambda: scan(store, files, schema).collect())


def trajectory(store: Store, job: Job, exclude=frozenset()) -> pl.DataFrame:
    """T2: α(t), β(t), ‖θ_t‖ per replicate and step, with the residual's share of the norm."""
    df = _read(store, job, ("projection",), TRAJECTORY_SCHEMA, exclude)
    return df.with_columns(
        residual_fraction=pl.col("beta") / pl.col("norm"),
        max_beta_over_max_norm=(pl.col("beta").max() / pl.col("norm").max()).over("sweep", "replicate"),
    ).sort("sweep", "replicate", "step")


def surface(store: Store, job: Job, exclude=frozenset()) -> pl.DataFrame:
    """T3/T4/T5/PCA planes: loss and error on each replicate's (a, b) grid (kind "grid"), the projected
    SGD path (kind "path", one row per checkpoint) and, for a PCA plane, the fraction of the path's
    variance along each axis (kind "axes": a and b)."""
    df = _read(store, job, of_table("surface"), SURFACE_SCHEMA, exclude)
    return df.unique(subset=["sweep", "replicate", "kind", "step", "a", "b", "split"], keep="first").sort(
        "sweep", "replicate", "kind", "step", "a", "b", "split")


def function_map(store: Store, job: Job, exclude=frozenset()) -> pl.DataFrame:
    """T6: every replicate at every checkpoint, τ and κ embedded jointly in 2-D by metric MDS."""
    df = _read(store, job, ("function_map",), FUNCTION_SCHEMA, exclude)
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


def line_points(store: Store, job: Job, item: bool = False, exclude=frozenset()) -> pl.LazyFrame:
    """The line sweeps' rows, only the columns the tables read (a query: nothing is loaded yet). Sweep
    and split names are read as categoricals (4 bytes a row instead of a 16-byte string view each: 5M
    rows take ~0.3 GB; whatever a file says, it is a category)."""
    lf = scan_points(store, job, exclude)
    names = lf.collect_schema().names()
    extra = [c for c in names if c not in POINT_SCHEMA.names]
    return lf.select(*[pl.col(k).cast(pl.Categorical) if k in ("sweep", "split") else pl.col(k) for k in POINT_KEY],
                     *(["item"] if item else []), "distance", "norm_a", "loss", "error", *extra)


def _streamed(lf: pl.LazyFrame) -> pl.DataFrame:
    return lf.collect(engine="streaming")


def line_tables(store: Store, job: Job, exclude=frozenset()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(curves, barriers) of the stored line points. The points are read once into a narrow frame
    (~100 bytes a row) and aggregated part by part (`_partitions`), so memory stays near the frame's
    size; re-read with item names, and de-duplicated, only if the store holds a point twice. A file
    that cannot be read is named (DamagedPoints), never skipped silently."""
    files = point_paths(store, job, exclude=exclude)
    points = read_or_name(store, job, files, lambda: _streamed(line_points(store, job, exclude=exclude)))
    done = by_parts(points)
    if done is None:
        del points
        deduped = _streamed(dedupe(line_points(store, job, item=True, exclude=exclude)).drop("item"))
        log.warning("found %d duplicate point rows; kept one of each",
                    _streamed(line_points(store, job, exclude=exclude).select(pl.len())).item() - deduped.height)
        done = by_parts(deduped)
    curve_parts, single_parts = done
    empty = sorted_points(pl.from_arrow(POINT_SCHEMA.empty_table()))
    curves_ = pl.concat(curve_parts).sort(CURVE_KEY + ["alpha"]) if curve_parts else curves_sorted(empty)
    single = pl.concat(single_parts).sort(PAIR_KEY + ["metric"]) if single_parts else per_curve_sorted(empty)
    return with_planned(curves_, job, grid=True), with_planned(barriers_of(single), job)


def planned_pairs(job: Job) -> dict[str, int]:
    """Sweep -> the curves (replicates or pairs of them) the job plans for each of its step pairs: what each mean
    of the curves and barriers tables should be over."""
    r, kinds = job.replicates, all_kinds()
    return {s.name: kinds[s.kind].pairs(r, 1, 1) for s in job.sweeps if s.kind in kinds and
            kinds[s.kind].table == "curves"}


def with_planned(df: pl.DataFrame, job: Job, grid: bool = False) -> pl.DataFrame:
    """`planned` (the curves the job plans for the row's mean) and `complete` (n = planned) beside `n`: a mean over
    fewer members than planned (a replicate retrained, a sweep cut short) is marked, never silently averaged.
    Curves rows also say whether their α is on the sweep's grid (`grid`): an adaptive α (refine) is only on the
    curves that asked for it, so its n counts those and `complete` is null there."""
    planned = planned_pairs(job)
    out = df.with_columns(pl.col("sweep").replace_strict(planned, default=None, return_dtype=pl.UInt32)
                          .alias("planned"))
    if grid:
        on = pl.lit(False)
        for s in job.sweeps:
            if s.name in planned:
                on = on | ((pl.col("sweep") == s.name) & pl.col("alpha").is_in(s.alpha.points()))
        out = out.with_columns(on.alias("grid"))
        return out.with_columns(pl.when(pl.col("grid")).then(pl.col("n") >= pl.col("planned")).alias("complete"))
    return out.with_columns((pl.col("n") >= pl.col("planned")).alias("complete"))


def checkpoints(store: Store, job: Job) -> pl.DataFrame:
    """The manifests of every stored checkpoint: the learning curves (T1)."""
    run = paths.run_dir(job.name, job.hash)
    ks = sorted(int(p.rsplit("_", 1)[-1]) for p in store.list_dirs(run) if "/replicate_" in p)
    rows = [m for k in ks if k < job.replicates for m in read_manifests(store, job, k).values()]
    if not rows:
        return pl.DataFrame(schema={"replicate": pl.Int64, "step": pl.Int64, "epoch": pl.Float64})
    df = pl.DataFrame(rows, infer_schema_length=None)
    # a column no manifest fills (epoch of external checkpoints) is a float column of nulls, not "Null"
    return df.with_columns(pl.col(c).cast(pl.Float64) for c, t in df.schema.items() if t == pl.Null).sort(
        "replicate", "step")


def sharpness(store: Store, job: Job, exclude=frozenset()) -> pl.DataFrame:
    """λ_max, tr(H) and the loss at the chosen points of each pair of the line sweeps that ask for them."""
    files = sharpness_files(store, job, exclude)
    df = read_or_name(store, job, files, lambda: scan(store, files, SHARPNESS_SCHEMA).collect())
    return df.sort("sweep", "replicate_a", "step_a", "replicate_b", "step_b", "alpha")


def merges(store: Store, job: Job, exclude=frozenset()) -> pl.DataFrame:
    """Every merged model of the merge sweeps (soups, task arithmetic) and split: loss and error."""
    files = point_paths(store, job, of_table("merges"), exclude)
    df = read_or_name(store, job, files, lambda: scan(store, files, MERGE_SCHEMA).collect())
    return df.drop([c for c in PROVENANCE if c in df.columns]).sort("sweep", "merge", "lam", "members", "split")


def kind_rows(table: str):
    """The default table of a kind's rows: every stored row of the job's sweeps that feed `table`, as stored
    (a plugin kind without a `build_table` of its own)."""
    def build(store: Store, job: Job, exclude=frozenset()) -> pl.DataFrame:
        return _read(store, job, of_table(table), schema_of(table), exclude)
    return build


def builders(job: Job) -> dict:
    """table -> build(store, job, exclude) of every table made of kinds' rows: the built-in kinds' always (their
    tables exist, empty, in every run), a plugin kind's where the job has a sweep of it."""
    used = {s.kind for s in job.sweeps}
    out = {}
    for k in all_kinds().values():
        if k.table != "curves" and (k.module.startswith("raysweep.") or k.name in used):
            out.setdefault(k.table, k.build_table or kind_rows(k.table))
    return out


def build(name: str, store: Store, job: Job, exclude=frozenset()) -> pl.DataFrame:
    """One table, computed now from what is stored (less the `exclude`d files)."""
    if name in ("curves", "barriers"):
        curves_, barriers_ = line_tables(store, job, exclude)
        return curves_ if name == "curves" else barriers_
    if name == "points":
        files = point_paths(store, job, exclude=exclude)
        return read_or_name(store, job, files, lambda: scan_points(store, job, exclude).collect())
    if name == "checkpoints":
        return checkpoints(store, job)
    if name == "sharpness":
        return sharpness(store, job, exclude)
    return builders(job)[name](store, job, exclude)


def aggregate(store: Store, job: Job) -> dict[str, pl.DataFrame]:
    """Build and store every table, with the record of what made them; returns them."""
    made_of = inputs(store, job)  # before reading: a file that lands meanwhile makes the tables stale
    curves_, barriers_ = line_tables(store, job)
    tables = {"curves": curves_, "barriers": barriers_, "checkpoints": checkpoints(store, job),
              "sharpness": sharpness(store, job), **{name: fn(store, job) for name, fn in builders(job).items()}}
    run = paths.run_dir(job.name, job.hash)
    store.delete(paths.tables_inputs(run))  # no record while the tables are half-written
    for name, df in tables.items():
        store.write_table(paths.table(run, name), df.to_arrow())
    store.write_json(paths.tables_inputs(run), made_of)
    return tables
