"""Curve sweeps' plans: which bends a job still has to train (one Tune trial each, train/bend.py) and,
once they are trained, the work items that evaluate the curves along t — one per (pair, t-chunk),
keyed like a line's, run by the same fan-out as the lines."""
from __future__ import annotations

import math

from raysweep.errors import CheckpointError, NotTrainedError
from raysweep.io import paths
from raysweep.io.runs import locator
from raysweep.io.store import Store
from raysweep.spec import CURVE_KINDS, Job, SweepSpec, bend_hash, sweep_hash
from raysweep.sweep.planner import Context, check_alignable
from raysweep.work.items import CurveItem, Ref, check_size, chunk_size, chunks, line_key
from raysweep.work.kinds import sweep_folder
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
