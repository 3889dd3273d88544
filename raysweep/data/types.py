"""What a dataset is to raysweep: Splits (tensors, normalisation, a training stream) and DatasetInfo."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch


class DatasetMissing(FileNotFoundError):
    """A dataset that is not where raysweep looked; the message says where and how to get it."""


@dataclass
class Splits:
    train_x: torch.Tensor | None  # None for datasets streamed from disk (ImageNet)
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None  # uint8 images: x/255, then (x − mean)/std per channel
    std: tuple[float, ...] | None = None
    augment: str = ""  # "" | "cifar" (random crop 32, padding 4, horizontal flip)
    stream: Callable[..., Iterator] | None = None  # (batch_size, seed, epoch, skip, workers) -> batches
    image_shape: tuple[int, ...] | None = None
    origin: str = ""  # for split-cached datasets: "cache" (read from the store) or "decoded" (then cached)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.image_shape or tuple(self.test_x.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "test":
            return self.test_x, self.test_y
        if name == "train":
            if self.train_x is None:
                raise ValueError("this dataset's training split is streamed from disk and is not evaluated whole; "
                                 "use splits = ['test'] for its sweeps")
            return self.train_x, self.train_y
        raise KeyError(f"unknown split {name!r}; splits are 'train' and 'test'")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Model input from stored data: uint8 -> float in [0, 1] -> normalised (on x's device)."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        if self.mean is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            mean = torch.tensor(self.mean, device=x.device).view(shape)
            std = torch.tensor(self.std, device=x.device).view(shape)
            x = (x - mean) / std
        return x


def _splits(xtr, ytr, xte, yte, num_classes, **kw) -> Splits:
    t = torch.from_numpy
    return Splits(t(np.ascontiguousarray(xtr)), t(np.asarray(ytr).astype(np.int64)),
                  t(np.ascontiguousarray(xte)), t(np.asarray(yte).astype(np.int64)), num_classes, **kw)


@dataclass(frozen=True)
class DatasetInfo:
    in_shape: tuple[int, ...]
    num_classes: int
    sizes: dict  # split -> number of examples
