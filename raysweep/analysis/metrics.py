"""Metrics of one curve L(α_0) … L(α_n), α increasing (Frankle 2020 Fig 3; Lucas et al. 2021). Plain numpy.

One rule for every metric of a curve (`curve_metrics`): it is computed over the part of the grid
between the endpoints, α ∈ [0, 1] (all of it for grids inside [0, 1], such as I4's windows; the
extrapolated ends of I7's [−0.5, 1.5] are drawn but not measured), and a NaN anywhere in that part
makes every metric NaN (monotone: null) — a diverged point is not a barrier of a known height.
Barriers also need α = 0 and α = 1 on the grid (else null).
"""
from __future__ import annotations

import numpy as np


def max_increase(values) -> float:
    """Largest rise moving left to right: max over i ≤ j of L(α_j) − L(α_i); 0 if non-increasing."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.max(v - np.minimum.accumulate(v)))


def _at(alphas, values, target: float):
    a = np.asarray(alphas, dtype=np.float64)
    hit = np.flatnonzero(np.isclose(a, target, rtol=0, atol=1e-9))
    return float(np.asarray(values, dtype=np.float64)[hit[0]]) if len(hit) else None


def between_endpoints(alphas, values) -> tuple[np.ndarray, np.ndarray]:
    """The grid points with α in [0, 1], and their values."""
    a, v = np.asarray(alphas, dtype=np.float64), np.asarray(values, dtype=np.float64)
    keep = (a >= -1e-9) & (a <= 1 + 1e-9)
    return a[keep], v[keep]


def _barrier(alphas, values, reference) -> float | None:
    """max over α in [0, 1] of L(α) − reference(α, L(0), L(1)); None unless α = 0 and 1 are on the grid."""
    l0, l1 = _at(alphas, values, 0.0), _at(alphas, values, 1.0)
    if l0 is None or l1 is None:
        return None
    a, v = between_endpoints(alphas, values)
    return float(np.max(v - reference(a, l0, l1)))


def barrier_linear(alphas, values) -> float | None:
    """max_α [L(α) − ((1−α)L(0) + αL(1))] over α in [0, 1]; None unless α = 0 and 1 are on the grid."""
    return _barrier(alphas, values, lambda a, l0, l1: (1 - a) * l0 + a * l1)


def peak_over_ends(alphas, values) -> float | None:
    """max_α L(α) − ½(L(0) + L(1)) over α in [0, 1] (Frankle et al. 2020's instability)."""
    return _barrier(alphas, values, lambda a, l0, l1: 0.5 * (l0 + l1))


def monotone(values) -> bool:
    """Whether L never increases along α."""
    return bool(np.all(np.diff(np.asarray(values, dtype=np.float64)) <= 0))


def max_bump(values) -> float:
    """Lucas et al. 2021's Δ: a bump starts where L rises; its height is the largest
    L(α_j) − L(α_start) before L falls below L(α_start) again. The largest bump (0 if none).

    Only starts at local minima matter: starting later on the same rise gives a lower bump.
    """
    v = np.asarray(values, dtype=np.float64)
    best = 0.0
    for i in range(len(v) - 1):
        if v[i + 1] > v[i] and (i == 0 or v[i - 1] >= v[i]):
            below = np.flatnonzero(v[i + 1:] < v[i])
            end = i + 1 + below[0] if len(below) else len(v)
            best = max(best, float(v[i:end].max() - v[i]))
    return best


def curve_metrics(alphas, values) -> dict:
    """Every metric of one curve, by the module's one rule: α in [0, 1] only; NaN there makes all NaN."""
    a, v = between_endpoints(alphas, values)
    if len(v) == 0 or np.isnan(v).any():
        nan = float("nan")
        has_ends = _at(alphas, values, 0.0) is not None and _at(alphas, values, 1.0) is not None
        return {"max_increase": nan, "barrier_linear": nan if has_ends else None,
                "peak_over_ends": nan if has_ends else None, "monotone": None, "max_bump": nan}
    return {"max_increase": max_increase(v), "barrier_linear": barrier_linear(a, v),
            "peak_over_ends": peak_over_ends(a, v), "monotone": monotone(v), "max_bump": max_bump(v)}


def barrier_peak(alphas: np.ndarray, values: np.ndarray) -> float | None:
    """The barrier peak of one curve (None without α = 0 and 1 or with a NaN in [0, 1])."""
    inside = (alphas >= -1e-9) & (alphas <= 1 + 1e-9)
    a, v = alphas[inside], values[inside]
    ends = [np.flatnonzero(np.isclose(a, t, rtol=0, atol=1e-9)) for t in (0.0, 1.0)]
    if not all(len(e) for e in ends) or np.isnan(v).any():
        return None
    l0, l1 = v[ends[0][0]], v[ends[1][0]]
    return float(a[int(np.argmax(v - ((1 - a) * l0 + a * l1)))])
