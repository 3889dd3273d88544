"""Mode-connecting curves (Garipov et al. 2018): a trained bend between two finals, evaluated along t in [0, 1].

    curve   θ_T(i) ⌒ θ_T(j), i < j, through a trained bend: `curve = {shape = "bezier" | "polychain", epochs, lr}`

The bends are trained first, one Tune trial each (train/bend.py; `bends_todo` says which); then one item per
(pair, t-chunk), keyed like a line's, rows in the curves and barriers tables (t in the alpha column). Its
figure puts the lines, aligned lines and curves between the same solutions side by side (Garipov et al. Fig 2).
"""
from __future__ import annotations

import math

from raysweep.errors import CheckpointError, NotTrainedError
from raysweep.io import paths
from raysweep.io.runs import locator
from raysweep.io.schemas import POINT_SCHEMA
from raysweep.io.store import Store
from raysweep.kinds.base import Context
from raysweep.kinds.lines import check_alignable, count
from raysweep.kinds.lines import figures as line_figures
from raysweep.spec import CURVE_KINDS, Job, SweepSpec, bend_hash, sweep_hash
from raysweep.work.items import CurveItem, Ref, check_size, chunk_size, chunks, line_key
from raysweep.work.kinds import Kind, register, sweep_folder
from raysweep.work.tasks import Bend


def curve_pairs(replicates) -> list[tuple[int, int]]:
    ks = sorted(replicates)
    return [(i, j) for i in ks for j in ks if i < j]


def bends_todo(job: Job, store: Store, trained: list[int]) -> list[Bend]:
    """The bends of the curve sweeps between trained replicates not trained yet."""
    return [task for s in job.sweeps if s.kind in CURVE_KINDS for i, j in curve_pairs(trained)
            if not (task := Bend(s.name, i, j)).done(store, job)]


def _bend_ref(store: Store, sweep: SweepSpec, path: str, sha_a: str, sha_b: str) -> Ref:
    """The bend and its sha256, from its record; refused when the record names other ends than the finals
    stored now (a bend is a curve between the ends it was trained between), or none."""
    try:
        record = store.read_json(paths.record(path))
        ends, sha = (record["sha256_a"], record["sha256_b"]), record["sha256"]
    except (ValueError, KeyError, TypeError, FileNotFoundError):
        ends, sha = None, ""
    if ends != (sha_a, sha_b):
        raise CheckpointError(f"the bend {store.url(path)} of curve sweep {sweep.name} was not trained between the "
                              f"final weights stored now (its record names other ends, or none): delete its folder "
                              f"{store.url(path.rsplit('/', 1)[0])} and run `raysweep run` (with the run's "
                              f"--storage) to train it again")
    return Ref(path, sha)


def curve_items(ctx: Context, sweep: SweepSpec, before: list) -> list[CurveItem]:
    """One item per (pair of finals, t-chunk); NotTrainedError while a bend is not trained."""
    if sweep.align != "none":
        check_alignable(ctx.job, sweep, ctx.info)
    ts = sweep.alpha.points()
    pairs = curve_pairs(ctx.finals)
    missing = [(i, j) for i, j in pairs if not Bend(sweep.name, i, j).done(ctx.store, ctx.job)]
    if missing:
        raise NotTrainedError(f"{len(missing)} bend(s) of curve sweep {sweep.name} are not trained yet (e.g. between "
                              f"replicates {missing[0][0]} and {missing[0][1]}); `raysweep run "
                              f"{locator(ctx.job, ctx.store)}` trains them")
    size = chunk_size(ctx.job, sweep, ctx.info)
    check_size(before, ctx.job, len(pairs) * math.ceil(len(ts) / size))
    h, folder, bh = sweep_hash(sweep), sweep_folder(ctx.run, sweep), bend_hash(sweep)
    out = []
    for i, j in pairs:
        a, b = ctx.finals[i], ctx.finals[j]
        ref = _bend_ref(ctx.store, sweep, paths.bend(ctx.run, sweep.name, bh, i, j), a.sha256, b.sha256)
        for c, part in enumerate(chunks(ts, size)):
            key = line_key(a, b, c * size, c * size + len(part))
            out.append(CurveItem(sweep.name, sweep.kind, h, key, paths.point_file(folder, key), a, b, ref,
                                 sweep.curve.shape, tuple(part), tuple(sweep.splits), sweep.bn_batches,
                                 tuple(sweep.metrics), sweep.align))
    return out


def evaluate(evaluator, job: Job, item: CurveItem):
    from raysweep.evaluate.bend import curve_item  # torch

    return curve_item(evaluator, job, item)


def figures(job: Job, sweep, t: dict) -> list:
    """The curve's own band figure; and, drawn once (with the job's first curve sweep), Garipov et al. (2018)
    Fig 2: every path between the same solutions side by side — the straight line, the line after aligning
    units, and the trained curves."""
    import polars as pl

    from raysweep.report.charts import SHAPES, paths_chart
    from raysweep.report.figures import Figure, has_batchnorm, over

    out = line_figures(job, sweep, t)
    if sweep is not next(s for s in job.sweeps if s.kind in CURVE_KINDS):
        return out
    curves = t["curves"]
    kinds = {s.name: s for s in job.sweeps if s.kind in ("final_to_final", "curve")}
    split = "test" if "test" in sweep.splits else sweep.splits[0]  # what the papers quote
    parts = []
    for name, s in kinds.items():
        label = (f"{SHAPES[s.curve.shape]}{' (aligned)' if s.align != 'none' else ''}" if s.kind == "curve"
                 else "aligned line" if s.align != "none" else "line") + f": {name}"
        parts.append(curves.filter(pl.col("sweep") == name, pl.col("split") == split, pl.col("alpha").is_between(0, 1))
                     .with_columns(path=pl.lit(label)))
    df = pl.concat(parts) if parts else curves.clear()
    if df.is_empty() or df.filter(pl.col("sweep").is_in([n for n, s in kinds.items() if s.kind == "curve"])).is_empty():
        return out
    bn = ", BatchNorm statistics recomputed at every t" if has_batchnorm(job) else ""
    mine = curves.filter(pl.col("sweep") == sweep.name)
    return out + [Figure("MC-paths", f"MC — line, aligned line and trained curves between solutions ({split})",
                         f"Mean {split} loss and error (± 1 std, clipped at 0) over {over(job, sweep, mine)} along "
                         f"each path between two final solutions: the straight line θ(α), the line after matching "
                         f"θ_T(j)'s hidden units to θ_T(i)'s, and the curves φ(t) whose bend was trained to minimise "
                         f"the expected loss along them{bn} (Garipov et al. 2018, Fig 2).",
                         [paths_chart(df, m, m) for m in ("loss", "error")])]


register(Kind("curve", family="curve", folder="line", table="curves", item=CurveItem, plan=curve_items,
              evaluate=evaluate, schema=POINT_SCHEMA, pairs=lambda r, c, s: r * (r - 1) // 2, tag="MC", count=count,
              figures=figures, module=__name__))
