"""Datasets that need no files: scikit-learn's digits (ships in the wheel), seeded synthetic data and the
rehearsal's stand-in."""
from __future__ import annotations

import numpy as np
import torch

from raysweep.data.types import Splits, _splits
from raysweep.spec import DataSpec


def digits(spec: DataSpec) -> Splits:
    """scikit-learn's 8x8 digits (1,797 images, ships in the wheel), scaled to [0, 1].

    A fixed stratified split: 30% test (540 images), 1,257 train, independent of any seed.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return _splits(xtr, ytr, xte, yte, 10)


def digits_shifted(spec: DataSpec) -> Splits:
    """digits under a distribution shift, for fine-tuning studies: every image moved 2 pixels right (the
    left columns zero) with Gaussian noise (σ 0.15, seeded) — train and test — and the clean test split
    kept as the extra split "test_clean" (the pretraining distribution). The same split as `digits`."""
    d = digits(spec)
    rng = np.random.default_rng(99)

    def shift(x):
        out = torch.zeros_like(x)
        out[..., 2:] = x[..., :-2]
        return (out + torch.from_numpy(rng.normal(0, 0.15, size=tuple(x.shape)).astype(np.float32))).clamp(0, 1)

    return Splits(
        shift(d.train_x), d.train_y, shift(d.test_x), d.test_y, 10, extra={"test_clean": (d.test_x, d.test_y)}
    )


def blobs(spec: DataSpec) -> Splits:
    """Seeded synthetic data: 10 Gaussian clusters in 32 dimensions, 1,000 train / 500 test."""
    rng = np.random.default_rng(1234)
    centres = rng.normal(0.0, 1.0, size=(10, 32))

    def draw(n):
        y = rng.integers(0, 10, size=n)
        return (centres[y] + rng.normal(0.0, 1.5, size=(n, 32))).astype(np.float32), y
    (xtr, ytr), (xte, yte) = draw(1000), draw(500)
    return _splits(xtr, ytr, xte, yte, 10)


def standin(spec: DataSpec) -> Splits:
    """The rehearsal's stand-in data (`raysweep run --rehearse`): a few seeded examples of a few features
    in `classes` Gaussian clusters, with every split the real job names. kwargs: classes, features, train,
    test, extra (the other split names)."""
    o = spec.options()
    classes, features = int(o.get("classes", 10)), int(o.get("features", 16))
    rng = np.random.default_rng(4321)
    centres = rng.normal(0.0, 1.0, size=(classes, features))

    def draw(n):
        y = rng.integers(0, classes, size=n)
        return torch.from_numpy((centres[y] + rng.normal(0, 0.5, (n, features))).astype(np.float32)), \
            torch.from_numpy(y).long()
    (xtr, ytr), (xte, yte) = draw(int(o.get("train", 8))), draw(int(o.get("test", 8)))
    return Splits(xtr, ytr, xte, yte, classes, extra={name: draw(int(o.get("test", 8))) for name in o.get("extra", [])})


def linreg(spec: DataSpec) -> Splits:
    """G's deep linear regression data: scalar x ~ N(0, 1), y = x; 1,000 train / 500 test (seeded).
    Real-valued targets make the loss the squared error (the error rate is NaN)."""
    rng = np.random.default_rng(7)
    xtr, xte = rng.normal(size=(1000, 1)).astype(np.float32), rng.normal(size=(500, 1)).astype(np.float32)
    t = torch.from_numpy
    return Splits(t(xtr), t(xtr[:, 0].copy()), t(xte), t(xte[:, 0].copy()), 1)
