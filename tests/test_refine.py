"""Adaptive α: bisection around each curve's barrier peak adds α where the curve is least resolved,
stores them like any other point, stops when the barrier estimate settles, and a rerun adds nothing."""
import copy

import numpy as np
import polars as pl
from conftest import TINY, run_in_process


def _peak(a, v):
    """The barrier peak by hand: the α where L rises furthest above the chord between the ends."""
    return a[int(np.argmax(v - ((1 - a) * v[0] + a * v[-1])))]

RAW = {**copy.deepcopy(TINY), "name": "refined",
       "sweeps": [{"name": "i5", "kind": "final_to_final", "alpha": {"num": 5}, "refine": 6, "refine_tol": 1e-9}]}


def test_refinement_bisects_around_the_barrier_peak_and_is_resumable(tmp_path):
    run = run_in_process(RAW, tmp_path / "s")
    points = run.points.collect().filter(pl.col("split") == "test").sort("alpha")
    alphas = points["alpha"].to_list()
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    extra = [a for a in alphas if a not in grid]
    assert len(extra) == 6 and len(set(alphas)) == len(alphas)  # tol 1e-9: `refine` new α, none twice
    # every refined α is a midpoint next to the barrier peak of the points before it
    a, v = np.array(alphas), points["loss"].to_numpy()
    peak = _peak(a, v)
    assert min(abs(e - peak) for e in extra) <= 0.25 / 8 + 1e-12  # three levels of bisection around it
    assert 0 < min(extra) and max(extra) < 1 and all(any(abs(e - (g + h) / 2) < 1e-12 for g in a for h in a)
                                                       for e in extra)
    # a rerun proposes nothing new: the same stored points give the same proposals, all done
    before = run.points.collect().height
    summary = run.sweep(progress=False, local=True)
    assert summary.items_run == 0 and run.points.collect().height == before


def test_refinement_stops_once_the_barrier_is_known_to_the_tolerance(tmp_path):
    raw = copy.deepcopy(RAW)
    raw["sweeps"][0]["refine_tol"] = 0.05  # loss units: a few levels at most, then the neighbours agree
    run = run_in_process(raw, tmp_path / "s")
    points = run.points.collect().filter(pl.col("split") == "test").sort("alpha")
    a, v = points["alpha"].to_numpy(), points["loss"].to_numpy()
    i = int(np.flatnonzero(a == _peak(a, v))[0])
    spread = max(abs(v[i] - v[j]) for j in (i - 1, i + 1))
    # level 0 bisects the peak's brackets (the loss moves 0.17 there); after it, 0.04 < 0.05: stop
    assert len(a) == 5 + 2 and spread < 0.05
