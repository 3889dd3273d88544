"""Toy models the papers use as controls, computed in numpy (no training, no Ray):

- B's stochastic models (B Fig 7-8): N random vectors in d dimensions; at each step one coordinate
  of each vector is multiplied by 0.9, coordinate i chosen with p ∝ 1/i (Zipf) or uniformly. Their
  paths, embedded by metric MDS, are compared with the τ maps of real networks (T6).
- G's random-walk control (G Fig 11): a Gaussian random walk whose step 900 is called the
  "solution"; its projection/residual plot (T2) has the same arch as a network's, which is why
  the arch's shape says little in high dimensions.

    raysweep toy breuel --law zipf --out zipf.html
    raysweep toy random-walk --dims 10 100 1000 --out walk.html
"""
from __future__ import annotations

import numpy as np
import polars as pl

from raysweep.analysis.mds import euclidean, mds
from raysweep.evaluate.trajectory import projection


def stochastic_paths(law: str = "zipf", vectors: int = 5, dim: int = 1000, steps: int = 20_000,
                     records: int = 20, factor: float = 0.9, seed: int = 0) -> np.ndarray:
    """(vectors, records + 1, dim) snapshots of B's stochastic model, the first one the start."""
    if law not in ("zipf", "uniform"):
        raise ValueError(f"law must be 'zipf' or 'uniform', got {law!r}")
    rng = np.random.default_rng(seed)
    x = rng.random((vectors, dim))
    p = 1.0 / np.arange(1, dim + 1) if law == "zipf" else np.ones(dim)
    p /= p.sum()
    snaps = [x.copy()]
    per = max(1, steps // records)
    for _ in range(records):
        # each vector draws its own coordinates; repeated picks multiply repeatedly
        picks = rng.choice(dim, size=(vectors, per), p=p)
        for v in range(vectors):
            counts = np.bincount(picks[v], minlength=dim)
            x[v] *= factor ** counts
        snaps.append(x.copy())
    return np.stack(snaps, axis=1)


def stochastic_map(law: str = "zipf", steps: int = 20_000, records: int = 20, **kwargs) -> pl.DataFrame:
    """The MDS map of every vector at every snapshot, embedded jointly (like T6's τ map); `step` is
    the model's step of each snapshot (0, steps/records, ..., steps)."""
    paths = stochastic_paths(law, steps=steps, records=records, **kwargs)
    n, t, d = paths.shape
    flat = paths.reshape(n * t, d)
    xy = mds(euclidean(flat))
    per = max(1, steps // records)
    return pl.DataFrame({"law": [law] * (n * t), "replicate": np.repeat(np.arange(n), t),
                         "step": np.tile(np.arange(t) * per, n), "tau_x": xy[:, 0], "tau_y": xy[:, 1]})


def memory_of_start(paths: np.ndarray) -> float:
    """Mean pairwise distance between the vectors at the end over that at the start."""
    def spread(x):
        d = np.linalg.norm(x[:, None] - x[None, :], axis=2)
        return d[np.triu_indices(len(x), 1)].mean()
    return float(spread(paths[:, -1]) / spread(paths[:, 0]))


def random_walk(dim: int, steps: int = 1000, solution: int = 900, seed: int = 0) -> pl.DataFrame:
    """G Fig 11: α(t), β(t) of a Gaussian random walk, the line drawn from step 0 to `solution`."""
    rng = np.random.default_rng(seed)
    walk = np.concatenate([np.zeros((1, dim)), rng.normal(size=(steps, dim)).cumsum(0)])
    rows = projection(list(walk), end=walk[solution])  # steps past the solution are projected too
    return pl.DataFrame({"dim": [dim] * len(rows), "step": np.arange(len(rows)),
                         "alpha": [r["alpha"] for r in rows], "beta": [r["beta"] for r in rows]})
