"""Data-parallel and accumulated updates, plain torch (torch.distributed): a replicate's place among
its ranks, the exact global-batch gradient whatever the split over ranks and micro-batches, and the
throughput of the epoch loop.

Every update is the update of one `train.batch_size` batch: each rank's loss is the *sum* over its
examples scaled by world / n (n: the examples of this update over all ranks), so DDP's average of
the ranks' gradients is the global batch's mean gradient, to float rounding — with micro-batches
(gradients accumulated, DDP's all-reduce once, on the last) and with ranks holding unequal parts of
a last, partial batch alike. BatchNorm keeps per-rank statistics in the forward pass, as standard
DDP does; its running statistics are rank 0's (DDP broadcasts them).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from raysweep.evaluate.sums import training_loss


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1

    @property
    def lead(self) -> bool:
        """Rank 0: the one that writes checkpoints, manifests and resume state."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def wrap(self, model: nn.Module, device) -> nn.Module:
        if self.world == 1:
            return model
        ids = [device.index or 0] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (a collective: every rank calls it)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


SINGLE = Rank()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, per_example, scale: float, micro: int,
             autocast: bool) -> None:
    """Gradients of scale · Σ loss over (x, y), `micro` examples per forward/backward (0: all at once);
    a DDP model reduces once, on the last micro-batch."""
    size = micro if 0 < micro < len(y) else max(len(y), 1)
    parts = [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]
    for i, (xb, yb) in enumerate(parts):
        last = i == len(parts) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync, torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = training_loss(model(xb), yb, per_example) * (len(yb) * scale)
        loss.backward()


def fitting_micro_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, per_example, autocast: bool) -> int:
    """train.micro_batch = 0: the largest micro-batch that fits, by halving on out-of-memory from the
    whole local batch (once, at the start; the gradients it leaves are cleared). The CPU: the batch."""
    size = len(y)
    if x.device.type != "cuda":
        return size
    while size >= 1:
        try:
            backward(model, x[:size], y[:size], per_example, 1.0, 0, autocast)
            torch.cuda.synchronize()
            return size
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            size //= 2
        finally:
            model.zero_grad(set_to_none=True)
    raise MemoryError("not even one example fits on the GPU for a forward and backward pass")


@dataclass
class Meter:
    """Images/s (a language model's tokens/s) and the share of time the loop waited for input, since the last
    `take`."""
    images: int = 0
    tokens: int = 0  # token targets (N, T): the positions trained on, padding included
    wait: float = 0.0
    since: float = field(default_factory=time.perf_counter)

    def take(self) -> dict:
        now = time.perf_counter()
        span = max(now - self.since, 1e-9)
        out = {"images_per_s": self.images / span, "data_wait": min(1.0, self.wait / span)}
        if self.tokens:
            out["tokens_per_s"] = self.tokens / span
        self.images, self.tokens, self.wait, self.since = 0, 0, 0.0, now
        return out

    def timed(self, batches, world: int):
        """The batches, with the time spent waiting for each counted."""
        it = iter(batches)
        while True:
            t = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t
            self.images += len(y) * world
            if y.dim() == 2 and not y.is_floating_point():
                self.tokens += y.numel() * world
            yield x, y
