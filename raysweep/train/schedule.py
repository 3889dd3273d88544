"""Checkpoint schedules: which training steps keep their weights (Frankle 2020's starting points; Breuel
2015's every epoch)."""

from __future__ import annotations

import math

from raysweep.spec import TrainSpec


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """OpenLTH counts ceil(N / B) iterations per epoch (the last batch is partial)."""
    return math.ceil(n_train / batch_size)


def frankle(total: int) -> list[int]:
    """F's starting points: {0} ∪ {2^k | k ≤ 10} ∪ {1000k | k ≥ 2, 1000k < T} ∪ {T}.

    For T > 1024 that is 12 + ⌊(T−1)/1000⌋ steps.
    """
    steps = {0, total} | {2**k for k in range(11)} | set(range(2000, total, 1000))
    return sorted(s for s in steps if s <= total)


def every_epoch(total: int, per_epoch: int) -> list[int]:
    return sorted(set(range(0, total, per_epoch)) | {total})


def checkpoint_steps(train: TrainSpec, n_train: int) -> list[int]:
    """The steps at which weights are saved; always includes 0 and the last step."""
    per_epoch = iterations_per_epoch(n_train, train.batch_size)
    total = per_epoch * train.epochs
    if train.checkpoints == "frankle":
        steps = set(frankle(total))
    elif train.checkpoints == "every_epoch":
        steps = set(every_epoch(total, per_epoch))
    else:
        steps = set()
    steps |= {s for s in train.steps if s <= total} | {0, total}
    return sorted(steps)
