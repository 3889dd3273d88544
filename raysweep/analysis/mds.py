"""Metric MDS maps of function space (B Fig 1-5): τ vectors by Euclidean distance, κ by Hamming."""
from __future__ import annotations

import numpy as np


def mds(d: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D metric MDS of a precomputed dissimilarity matrix (scikit-learn, seeded)."""
    import inspect

    from sklearn.manifold import MDS

    if len(d) < 3 or not d.any():
        return np.zeros((len(d), 2))
    kwargs = {"n_components": 2, "random_state": seed, "n_init": 4, "normalized_stress": "auto"}
    if "metric_mds" in inspect.signature(MDS).parameters:  # scikit-learn >= 1.8 renamed the options
        kwargs.update(metric_mds=True, metric="precomputed", init="random")
    else:
        kwargs.update(metric=True, dissimilarity="precomputed")
    return MDS(**kwargs).fit_transform(d)


def euclidean(x: np.ndarray) -> np.ndarray:
    sq = (x ** 2).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))


def hamming(kappa: np.ndarray) -> np.ndarray:
    """Fraction of positions where two label vectors differ, for every pair of rows: (E − agreements)/E,
    the agreements counted one class at a time as a product of 0/1 indicator matrices. Memory is
    O(N² + N·E) (not the O(N²·E) of a broadcast comparison); float32 counts are exact below 2^24."""
    n, e = kappa.shape
    agree = np.zeros((n, n), dtype=np.float32)
    for c in np.unique(kappa):
        hit = (kappa == c).astype(np.float32)
        agree += hit @ hit.T
    return (e - agree.astype(np.float64)) / e if e else np.zeros((n, n))  # differing count / E, as a mean


def mds_maps(tau: np.ndarray, kappa: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D metric MDS of all τ vectors (Euclidean) and all κ vectors (Hamming), embedded jointly."""
    return mds(euclidean(tau), seed), mds(hamming(kappa), seed)
