"""Training batches: the example order of an epoch is a pure function of (replicate seed, epoch), which
is what makes resumed training bitwise identical."""
from __future__ import annotations

from typing import Iterator

import torch

from raysweep.data.types import Splits


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a permutation seeded by (replicate seed, epoch)."""
    g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
    return torch.randperm(n, generator=g)


def cifar_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of the zero-padded (4 px) image and a random horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (n,), generator=g), torch.randint(0, 9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def train_batches(splits: Splits, batch_size: int, seed: int, epoch: int, skip: int = 0, workers: int = 0,
                  rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of one epoch (the last one partial), starting after `skip` batches; stored dtype. With
    `world` ranks, rank `rank`'s part of each `batch_size` batch: of an in-memory dataset, its slice of
    the very batch one process would take; of a stream, batch_size/world rows of its own range."""
    if splits.stream is not None:
        yield from splits.stream(batch_size // world, seed, epoch, skip, workers, rank=rank, world=world)
        return
    order = epoch_order(splits.n_train, seed, epoch)
    for b, start in enumerate(range(skip * batch_size, len(order), batch_size), start=skip):
        idx = order[start:start + batch_size]
        if world > 1:
            idx = torch.tensor_split(idx, world)[rank]
        x = splits.train_x[idx]
        if splits.augment == "cifar":
            g = torch.Generator().manual_seed(1_000_003 * seed + 7_919 * epoch + b)
            x = cifar_augment(splits.train_x[order[start:start + batch_size]], g)[
                torch.tensor_split(torch.arange(len(order[start:start + batch_size])), world)[rank]] if world > 1 \
                else cifar_augment(x, g)
        yield x, splits.train_y[idx]
