import numpy as np
import pytest

from raysweep.analysis.metrics import barrier_linear, curve_metrics, max_bump, max_increase, monotone, peak_over_ends

A5 = [0.0, 0.25, 0.5, 0.75, 1.0]


def test_monotone_curve_has_no_barrier():
    m = curve_metrics(A5, [4.0, 3.0, 2.0, 1.0, 0.5])
    # the endpoint line runs 4 → 0.5; the convex curve stays below it, so the max is 0 at the ends
    assert m == {"max_increase": 0.0, "barrier_linear": 0.0, "peak_over_ends": 4.0 - 2.25,
                 "monotone": True, "max_bump": 0.0}


def test_hand_made_bump():
    L = [1.0, 0.5, 0.9, 0.7, 0.2]
    assert max_increase(L) == pytest.approx(0.4)           # 0.5 → 0.9
    assert max_bump(L) == pytest.approx(0.4)
    assert not monotone(L)
    # line from 1.0 to 0.2: at α=0.5 it is 0.6; the curve is 0.9 → 0.3
    assert barrier_linear(A5, L) == pytest.approx(0.3)
    assert peak_over_ends(A5, L) == pytest.approx(1.0 - 0.6)


def test_bump_ends_when_curve_falls_below_its_start():
    # two bumps: 0→3 (height 3, ends at the 0 … then -1) and -1→0.5 (height 1.5)
    L = [0.0, 3.0, -1.0, 0.5, -2.0]
    assert max_bump(L) == pytest.approx(3.0)
    # max_increase ignores where bumps end: -1 → 0.5 is 1.5 but 0 → 3 is 3
    assert max_increase(L) == pytest.approx(3.0)
    L2 = [2.0, 1.0, 1.5, 0.0, 4.0]   # a late rise from the global minimum dominates
    assert max_increase(L2) == pytest.approx(4.0) and max_bump(L2) == pytest.approx(4.0)


def test_barriers_need_both_endpoints():
    assert barrier_linear([0.1, 0.2], [1.0, 2.0]) is None
    assert peak_over_ends([0.0, 0.005, 0.01], [1.0, 2.0, 1.0]) is None


def test_extrapolated_grid_uses_only_the_inside_for_barriers():
    alphas = [-0.5, 0.0, 0.5, 1.0, 1.5]
    L = [10.0, 1.0, 2.0, 1.0, 10.0]
    assert peak_over_ends(alphas, L) == pytest.approx(1.0)
    assert barrier_linear(alphas, L) == pytest.approx(1.0)
    assert max_increase(L) == pytest.approx(9.0)  # the function itself measures what it is given ...
    m = curve_metrics(alphas, L)  # ... a curve's metrics cover α in [0, 1] only, all of them
    assert m["max_increase"] == pytest.approx(1.0) and m["max_bump"] == pytest.approx(1.0)
    assert m["peak_over_ends"] == pytest.approx(1.0) and m["monotone"] is False


def test_a_nan_between_the_endpoints_makes_every_metric_nan():
    m = curve_metrics([0.0, 0.25, 0.5, 0.75, 1.0], [1.0, 3.0, float("nan"), 2.0, 1.0])
    assert all(np.isnan(m[k]) for k in ("max_increase", "barrier_linear", "peak_over_ends", "max_bump"))
    assert m["monotone"] is None
    # outside [0, 1] a NaN (a diverged extrapolation) does not matter
    m = curve_metrics([-0.5, 0.0, 0.5, 1.0], [float("nan"), 1.0, 2.0, 1.0])
    assert m["peak_over_ends"] == pytest.approx(1.0) and m["max_bump"] == pytest.approx(1.0)


def test_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        L = rng.normal(size=12).cumsum()
        brute = max(L[j] - L[i] for i in range(12) for j in range(i, 12))
        assert max_increase(L) == pytest.approx(brute)
        bumps = [0.0]
        for i in range(11):
            if L[i + 1] > L[i]:
                j = i + 1
                top = L[i]
                while j < 12 and L[j] >= L[i]:
                    top = max(top, L[j])
                    j += 1
                bumps.append(top - L[i])
        assert max_bump(L) == pytest.approx(max(bumps))
