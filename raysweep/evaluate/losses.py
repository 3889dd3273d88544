"""Per-example losses and metrics: built-ins by name, or your own by import path.

    train.loss    "auto" (cross-entropy for class labels, squared error for real targets),
                  "cross_entropy", "squared_error", or "pkg.module:fn"
    eval.metrics  ["top5_error", "pkg.module:fn", ...]: extra columns of `points`, with curves and
                  barriers like loss and error; the column is named after the function

Contract: fn(outputs: Tensor (N, ...), targets: Tensor (N, ...)) -> Tensor (N,) of per-example values
(the loss trains as their mean and is evaluated as their mean over a whole split).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from raysweep.errors import SpecError
from raysweep.plugins import Registry, load_object
from raysweep.spec import is_import_path

PerExample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.float(), y, reduction="none")


def squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out.float().reshape(y.shape) - y) ** 2).reshape(len(y), -1).sum(1)


def top5_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 where the label is not among the 5 highest outputs (ImageNet's top-5 error)."""
    k = min(5, out.shape[1])
    return (out.topk(k, dim=1).indices != y[:, None]).all(1).double()


# name -> per-example fn(outputs, targets) -> Tensor (N,); yours: @register_loss / @register_metric in a plugin
LOSSES, METRICS = Registry("loss"), Registry("metric")
register_loss, register_metric = LOSSES.register, METRICS.register
register_loss("cross_entropy")(cross_entropy)
register_loss("squared_error")(squared_error)
register_metric("top5_error")(top5_error)


def resolve(name: str, registry: dict, what: str) -> PerExample:
    if name in registry:
        return registry[name]
    if is_import_path(name):
        return load_object(name, what)
    raise SpecError(f"{what} = {name!r} is neither a built-in ({sorted(registry)}) nor an import path pkg.module:fn")


def loss_fn(name: str) -> PerExample | None:
    """The per-example loss of `train.loss`; None for "auto" (decided by the targets' type)."""
    return None if name == "auto" else resolve(name, LOSSES, "train.loss")


def metric_name(name: str) -> str:
    """A metric's column: its function's name."""
    return name.rsplit(":", 1)[-1]


def metric_fns(names: tuple[str, ...]) -> list[PerExample]:
    return [resolve(n, METRICS, "eval.metrics") for n in names]
