"""Sums over whole splits — the loss, the errors, extra metrics — as one float64 device tensor read
back once; the device choice; BatchNorm statistics re-estimation; the first-layer split the
Evaluator mixes. Plain torch."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.data.types import IGNORE

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
BN_RESET_SEED = 12_345  # the fixed order of training batches used to re-estimate BN statistics


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when present (with TF32 matmuls/convolutions and cuDNN autotuning), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return torch.device(name)


def _identity(x):
    return x


def cross_entropy_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_i −log softmax(logits_i)[y_i] in float64, as logsumexp − the label's logit: the same number
    as F.cross_entropy(reduction="sum") to float rounding (inf and NaN logits give inf and NaN alike),
    4x faster on CPU for few classes (log_softmax over a short last dimension is slow there)."""
    picked = logits.gather(1, y[:, None]).squeeze(1)
    return (torch.logsumexp(logits, 1) - picked).sum(dtype=torch.float64)


def logits_of(out) -> torch.Tensor:
    """A model's outputs as a tensor: a Hugging Face `ModelOutput`'s `.logits`, else the output itself."""
    return out.logits if hasattr(out, "logits") else out


def tokens(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence outputs (N, T, V) with targets (N, T) as one row per valid token — (M, V) and (M,), the
    IGNORE positions dropped — so that every loss, error and metric is a sum over tokens; anything else as
    it is."""
    if logits.dim() == 3 and y.dim() == 2 and not y.is_floating_point():
        keep = y.reshape(-1) != IGNORE
        return logits.reshape(-1, logits.shape[-1])[keep], y.reshape(-1)[keep]
    return logits, y


def count(y: torch.Tensor) -> int:
    """What a split's sums are divided by: its examples, or for token targets (N, T) its valid tokens."""
    if y.dim() == 2 and not y.is_floating_point():
        return int((y != IGNORE).sum())
    return len(y)


def sequence_metrics(loss: float, bytes_per_token: float) -> dict:
    """A language model's numbers from its mean token loss (nats): perplexity = exp(loss), and bits per
    byte = loss / ln 2 / (UTF-8 bytes per token), comparable across tokenizers."""
    return {"perplexity": math.exp(loss) if not loss > 700 else math.inf,
            "bits_per_byte": loss / math.log(2) / bytes_per_token}


def split_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, prepare=_identity,
               bf16: bool = False, loss=None, metrics=()) -> torch.Tensor:
    """[sum of the loss, number of errors, sum of each extra metric] over a whole split, as a float64
    device tensor; over its valid tokens for token targets (`tokens`; divide by `count`). `loss` is a
    per-example function (None: cross-entropy for class labels, squared
    error for real targets, whose error rate is NaN); `metrics` are per-example functions.

    With `bf16`, one autocast region spans every batch, so each weight is cast to bf16 once (autocast
    caches the casts of leaf tensors that require grad until the region ends), not once per batch."""
    sums = torch.zeros(2 + len(metrics), dtype=torch.float64, device=x.device)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(y), batch_size):
            logits, yb = logits_of(model(prepare(x[i:i + batch_size]))).float(), y[i:i + batch_size]
            if loss is None and not metrics and logits.dim() == 3 and yb.dim() == 2 and not yb.is_floating_point():
                # token targets, the built-in loss: over the valid tokens without copying them out (padding
                # ignored by cross-entropy's ignore_index and masked out of the errors)
                flat, target = logits.reshape(-1, logits.shape[-1]), yb.reshape(-1)
                sums[0] += F.cross_entropy(flat, target, ignore_index=IGNORE, reduction="sum").double()
                sums[1] += ((flat.argmax(1) != target) & (target != IGNORE)).sum()
                continue
            logits, yb = tokens(logits, yb)
            if loss is not None:
                sums[0] += loss(logits, yb).sum().double()
            elif yb.is_floating_point():  # regression (G's deep linear models): squared error
                sums[0] += ((logits.reshape(yb.shape) - yb) ** 2).sum().double()
            else:
                sums[0] += cross_entropy_sum(logits, yb)
            if yb.is_floating_point():  # no error rate for real-valued targets
                sums[1] = float("nan")
            else:
                sums[1] += (logits.argmax(1) != yb).sum()
            for j, metric in enumerate(metrics):
                sums[2 + j] += metric(logits, yb).sum().double()
    return sums


def choice_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, labels: torch.Tensor, batch_size: int,
                prepare=_identity, bf16: bool = False, extra: int = 0) -> torch.Tensor:
    """[the correct choices' summed token loss, the examples answered wrongly, NaN for each of `extra` metrics]
    of a multiple-choice split (data/tasks.py): rows i·K … i·K + K − 1 are example i's choices, only a choice's
    tokens are targets, and the answer is the choice of the lowest summed loss — the highest log-likelihood,
    the first of equal ones (lm-eval's acc)."""
    nll = torch.empty(len(y), dtype=torch.float64, device=x.device)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(y), batch_size):
            logits, yb = logits_of(model(prepare(x[i:i + batch_size]))).float(), y[i:i + batch_size]
            per_token = F.cross_entropy(logits.transpose(1, 2), yb, ignore_index=IGNORE, reduction="none")
            nll[i:i + batch_size] = per_token.sum(1).double()
    nll, labels = nll.view(-1, k), labels.to(x.device)
    right = nll.gather(1, labels[:, None]).sum()
    wrong = (nll.argmin(1) != labels).sum().double()
    return torch.cat([torch.stack([right, wrong]), torch.full((extra,), math.nan, dtype=torch.float64,
                                                              device=x.device)])


def training_loss(out: torch.Tensor, y: torch.Tensor, loss=None) -> torch.Tensor:
    """The mean of `loss` (a per-example function), or: cross-entropy for class labels, mean squared
    error for real-valued targets; for token targets, over their valid tokens."""
    out, y = tokens(logits_of(out), y)
    if loss is not None:
        return loss(out, y).mean()
    if y.is_floating_point():
        return ((out.reshape(y.shape).float() - y) ** 2).mean()
    return F.cross_entropy(out, y)


@torch.no_grad()
def split_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  prepare=_identity, loss=None) -> tuple[float, float]:
    """(mean loss, error rate) of `model` in eval mode on a whole split."""
    was_training = model.training
    model.eval()
    loss, err = (split_sums(model, x, y, batch_size, prepare, loss=loss) / count(y)).tolist()
    model.train(was_training)
    return loss, err


@contextmanager
def bn_reestimation(model: nn.Module):
    """Reset BN running stats and put only BN layers in train mode with a cumulative average."""
    bns = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
            m.eval()


def first_layer_split(model: nn.Module) -> tuple[nn.Sequential | None, nn.Sequential | None]:
    """(head, tail) of a Sequential whose first weighted module is a Linear, preceded only by
    modules that are the identity or a reshape in eval mode; (None, None) otherwise."""
    if not isinstance(model, nn.Sequential):
        return None, None
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            return model[:i + 1], model[i + 1:]
        if not isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity)):
            return None, None
    return None, None
