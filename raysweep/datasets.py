"""DATASETS registry: name -> loader(DataSpec) -> Splits (whole splits as tensors).

Evaluation always runs on a whole split, decoded once into tensors and kept by the evaluator.
Training draws batches from a per-(seed, epoch) permutation, so data order is a pure function of
the replicate seed and the epoch — which is what makes resumed training bitwise identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from raysweep.spec import DataSpec


@dataclass
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "train":
            return self.train_x, self.train_y
        if name == "test":
            return self.test_x, self.test_y
        raise KeyError(f"unknown split {name!r}; splits are 'train' and 'test'")


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


def blobs(spec: DataSpec) -> Splits:
    """Seeded synthetic data: 10 Gaussian clusters in 32 dimensions, 1,000 train / 500 test."""
    rng = np.random.default_rng(1234)
    centres = rng.normal(0.0, 1.0, size=(10, 32))
    def draw(n):
        y = rng.integers(0, 10, size=n)
        return (centres[y] + rng.normal(0.0, 1.5, size=(n, 32))).astype(np.float32), y
    (xtr, ytr), (xte, yte) = draw(1000), draw(500)
    return _splits(xtr, ytr, xte, yte, 10)


def _splits(xtr, ytr, xte, yte, num_classes) -> Splits:
    t = torch.from_numpy
    return Splits(t(np.ascontiguousarray(xtr)), t(ytr.astype(np.int64)),
                  t(np.ascontiguousarray(xte)), t(yte.astype(np.int64)), num_classes)


DATASETS: dict[str, Callable[[DataSpec], Splits]] = {"digits": digits, "blobs": blobs}


def load_splits(spec: DataSpec) -> Splits:
    if spec.name not in DATASETS:
        raise KeyError(f"unknown dataset {spec.name!r}; registered datasets are {sorted(DATASETS)}")
    return DATASETS[spec.name](spec)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a permutation seeded by (replicate seed, epoch)."""
    g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
    return torch.randperm(n, generator=g)


def train_batches(splits: Splits, batch_size: int, seed: int, epoch: int, skip: int = 0
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of one epoch (the last one partial), starting after `skip` batches."""
    order = epoch_order(len(splits.train_y), seed, epoch)
    for start in range(skip * batch_size, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield splits.train_x[idx], splits.train_y[idx]


# Training-set sizes, so that plans and costs need no data on this machine.
TRAIN_SIZES = {"digits": 1257, "blobs": 1000}
EVAL_SIZES = {"digits": {"train": 1257, "test": 540}, "blobs": {"train": 1000, "test": 500}}


def train_size(spec: DataSpec) -> int:
    return TRAIN_SIZES[spec.name] if spec.name in TRAIN_SIZES else len(load_splits(spec).train_y)


def split_size(spec: DataSpec, split: str) -> int:
    if spec.name in EVAL_SIZES:
        return EVAL_SIZES[spec.name][split]
    return len(load_splits(spec).split(split)[1])
