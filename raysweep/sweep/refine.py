"""Adaptive α refinement: after a line sweep's uniform grid, bisect where each curve's barrier is.

For a sweep with `refine = N`, each curve (one pair, the sweep's first split) gets up to N extra α,
two per level: at level ℓ, the midpoints between the current barrier peak α* (the argmax over
α ∈ [0, 1] of L(α) − ((1−α)L(0) + αL(1)), on the loss) and its two neighbours on the points stored so
far. Refinement of a curve stops when the loss differs from the peak's by less than `refine_tol`
(loss units) at both neighbours — on a smooth curve the barrier between them cannot be higher by
more — or at N extra points. The extra points are stored like any other, as items
keyed `r<a>…__r<b>…__x<level>-<digest of the α>`, so a rerun proposes the same α from the same
stored points and finds them done; the tables include them (their curve rows carry n = the pairs
that have that α).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import polars as pl

from raysweep.analysis.metrics import barrier_peak
from raysweep.io import paths
from raysweep.spec import LINE_KINDS, Job
from raysweep.work.items import LineItem, line_base


def refine_key(base: str, level: int, alphas: list[float]) -> str:
    digest = hashlib.sha256(",".join(f"{a:.17g}" for a in alphas).encode()).hexdigest()[:10]
    return f"{base}__x{level:02d}-{digest}"


def _level(item: str) -> int:
    tail = item.rsplit("__", 1)[-1]
    return int(tail[1:3]) if tail.startswith("x") else -1


def _spread(values: np.ndarray, i: int) -> float:
    """How far the loss moves between the peak and its neighbours: on a smooth curve, a bound on how
    much higher the barrier between them can be than the peak seen."""
    return max(abs(values[i] - values[j]) for j in (i - 1, i + 1) if 0 <= j < len(values))


def refined_sweeps(job: Job) -> list:
    return [s for s in job.sweeps if s.kind in LINE_KINDS and s.refine > 0]


POINT_COLUMNS = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "split", "alpha", "loss", "item"]


def proposals(job: Job, points: pl.DataFrame, items: list) -> list[LineItem]:
    """The next level's refinement items of every sweep with `refine` > 0, from the stored `points`
    (POINT_COLUMNS of the line points); `items` are the planned (uniform-grid) items, which name each
    pair's endpoints."""
    out = []
    for sweep in refined_sweeps(job):
        pairs = {}
        for it in items:
            if it.sweep == sweep.name:
                pairs.setdefault((it.a.replicate, it.a.step, it.b.replicate, it.b.step, it.a.child, it.b.child), it)
        split = sweep.splits[0]
        mine = points.filter(pl.col("sweep") == sweep.name, pl.col("split") == split)
        for key, it in pairs.items():
            base = line_base(it.key)
            curve = mine.filter(pl.col("replicate_a") == key[0], pl.col("step_a") == key[1],
                                pl.col("replicate_b") == key[2], pl.col("step_b") == key[3],
                                pl.col("item").str.starts_with(base))
            if curve.is_empty():
                continue
            curve = curve.sort("alpha").unique("alpha", keep="first", maintain_order=True)
            levels = curve["item"].map_elements(_level, return_dtype=pl.Int64)
            top = int(levels.max())
            extra = int((levels >= 0).sum())
            if extra + 2 > sweep.refine:
                continue
            a, v = curve["alpha"].to_numpy(), curve["loss"].to_numpy()
            peak = barrier_peak(a, v)
            if peak is None:
                continue
            i = int(np.flatnonzero(a == peak)[0])
            if _spread(v, i) < sweep.refine_tol:  # the barrier height is known to the tolerance
                continue
            new = sorted({(a[j] + peak) / 2 for j in (i - 1, i + 1) if 0 <= j < len(a)} - set(a.tolist()))
            if not new:
                continue
            k = refine_key(base, top + 1, new)
            out.append(dataclasses.replace(it, key=k, alphas=tuple(new), splits=(split,),
                                           path=paths.point_file(it.path.rsplit("/", 1)[0], k)))
    return out
