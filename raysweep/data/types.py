"""What a dataset is to raysweep: Splits (tensors, normalisation, a training stream) and DatasetInfo."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from raysweep.data.subset import subset_indices
from raysweep.errors import DatasetMissing  # noqa: F401  (the data package's error)

IGNORE = -100  # a target position that is no token to predict (padding), as torch's cross-entropy ignores it


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
    origin: str = ""
    # more evaluation splits, by name (e.g. {"test_shifted": (x, y)}: a distribution shift), swept like "test";
    # for split-cached datasets: "cache" (read from the store) or "decoded" (then cached)
    extra: dict = field(default_factory=dict)
    # streamed training splits: n -> the (uint8 x, y) of the "train_subset" split, n training examples in the
    # evaluation view (the dataset's own choice of them: subset_indices, or a shuffled pack's first n rows)
    train_rows: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None
    # text: split -> UTF-8 bytes per valid target token (the bits-per-byte denominator); {} for other data
    bytes_per_token: dict = field(default_factory=dict)
    # text: multiple-choice task splits (data/tasks.py) -> (choices per example K, the correct choice of each);
    # their windows are in `extra`, K per example
    choices: dict = field(default_factory=dict)
    # text: lm-evaluation-harness task splits -> (the task's name, the include folder of its files or "")
    harness: dict = field(default_factory=dict)
    _subset: dict = field(default_factory=dict, repr=False, compare=False)  # n -> (x, y): the last subset
    _constants: dict = field(default_factory=dict, repr=False, compare=False)  # (device, dims, uint8) -> (scale, shift)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.image_shape or tuple(self.test_x.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    def split(self, name: str, train_examples: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A split by name; "train_subset" is `train_examples` of the training split (`train_subset`)."""
        if name == "test":
            return self.test_x, self.test_y
        if name == "train":
            if self.train_x is None:
                raise ValueError("this dataset's training split is streamed from disk and is not evaluated whole; "
                                 "use splits = ['test'] for its sweeps")
            return self.train_x, self.train_y
        if name in self.extra:
            return self.extra[name]
        if name == "train_subset" and train_examples:
            return self.train_subset(train_examples)
        raise KeyError(f"unknown split {name!r}; this dataset's splits are {['train', 'test', *self.extra]}")

    def train_subset(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The "train_subset" split: n training examples (those at `subset_indices(n_train, n)` where the
        split is held), the same on every machine and every run. Kept for the process's next call (one
        subset at a time: bounded memory)."""
        if n not in self._subset:
            self._subset.clear()
            if self.train_x is not None:
                idx = subset_indices(self.n_train, n)
                x, y = self.train_x[idx], self.train_y[idx]
            elif self.train_rows is not None:
                x, y = self.train_rows(n)
            else:
                raise ValueError("this dataset streams its training split and cannot decode examples of it for "
                                 "evaluation; use splits = ['test']")
            self._subset[n] = (x, y)
        return self._subset[n]

    def prepare(self, x: torch.Tensor, dtype: torch.dtype | None = None,
                channels_last: bool = False) -> torch.Tensor:
        """Model input from stored data, in one pass over the batch: uint8 x ↦ x·scale + shift with
        scale = 1/(255·std), shift = −mean/std (float inputs: 1/std), written straight in `dtype`
        (float32 by default) and, for 4-D batches with `channels_last`, in NHWC layout. The constants
        live on the batch's device from the first call on: no batch makes a host→device copy."""
        if not x.is_floating_point() and x.dtype != torch.uint8:  # token ids: the model's input as they are
            return x
        if self.mean is None and x.dtype != torch.uint8:
            return self._layout(x if dtype is None else x.to(dtype), channels_last)
        scale, shift = self._scale_shift(x)
        out = torch.empty(
            x.shape,
            dtype=dtype or torch.float32,
            device=x.device,
            memory_format=torch.channels_last if channels_last and x.dim() == 4 else torch.contiguous_format,
        )
        return torch.addcmul(shift, x, scale, out=out)

    def _scale_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.dim(), x.dtype == torch.uint8)
        if key not in self._constants:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            mean = torch.tensor(self.mean or (0.0,), dtype=torch.float64)
            std = torch.tensor(self.std or (1.0,), dtype=torch.float64)
            scale = 1 / (std * 255) if x.dtype == torch.uint8 else 1 / std
            self._constants[key] = (
                scale.float().view(shape).to(x.device),
                (-mean / std).float().view(shape).to(x.device),
            )
        return self._constants[key]

    @staticmethod
    def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def _splits(xtr, ytr, xte, yte, num_classes, **kw) -> Splits:
    t = torch.from_numpy
    return Splits(t(np.ascontiguousarray(xtr)), t(np.asarray(ytr).astype(np.int64)),
                  t(np.ascontiguousarray(xte)), t(np.asarray(yte).astype(np.int64)), num_classes, **kw)


@dataclass(frozen=True)
class DatasetInfo:
    in_shape: tuple[int, ...]
    num_classes: int
    sizes: dict  # split -> number of examples
