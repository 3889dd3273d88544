"""REPAIR's per-unit correction (Jordan, Sedghi, Saukh, Entezari & Neyshabur 2023, "REPAIR: REnormalizing
Permuted Activations for Interpolation Repair"), for lines between networks — aligned ones above all —
whose hidden units lose their variance in the middle ("variance collapse"), BatchNorm or not.

At θ(α) every hidden layer's units (a Linear's outputs, a Conv's channels; all weighted layers but the
last) are given the mean and standard deviation the two endpoints' units have, interpolated: target
μ = (1−α)·μ_a + α·μ_b, σ = (1−α)·σ_a + α·σ_b, measured on the same fixed training batches that
`bn = "reset"` uses. Layer by layer in forward order (a corrected layer changes the ones after it),
the unit's weights are scaled by σ_target/σ and its bias becomes (b − μ)·σ_target/σ + μ_target, so on
those batches the unit's pre-activation has exactly the target statistics. At α = 0 and 1 nothing
changes. Sweeps choose it with `bn = "repair"`.
"""
from __future__ import annotations

import torch
from torch import nn

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
EPS = 1e-5


def hidden_layers(model: nn.Module) -> list[nn.Module]:
    """The weighted layers whose outputs are hidden units: every Linear/Conv but the last (the logits)."""
    layers = [m for m in model.modules() if isinstance(m, WEIGHTED)]
    return layers[:-1]


@torch.no_grad()
def unit_stats(model: nn.Module, layers: list[nn.Module], batches: list[torch.Tensor], prepare) -> list[tuple]:
    """(mean, std) of each layer's outputs per unit (over examples and positions) at the model's
    current weights, from one pass over `batches` (eval mode)."""
    sums = {id(m): [0.0, 0.0, 0] for m in layers}

    def hook(module, _inputs, out):
        y = out.float().transpose(0, 1).reshape(out.shape[1], -1)  # unit × (examples · positions)
        acc = sums[id(module)]
        acc[0] = acc[0] + y.sum(1)
        acc[1] = acc[1] + (y * y).sum(1)
        acc[2] += y.shape[1]

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        model.eval()
        for x in batches:
            model(prepare(x))
    finally:
        for h in handles:
            h.remove()
    out = []
    for m in layers:
        s, sq, n = sums[id(m)]
        mean = s / n
        out.append((mean, (sq / n - mean * mean).clamp_min(0).sqrt()))
    return out


@torch.no_grad()
def repair(model: nn.Module, batches: list[torch.Tensor], prepare, stats_a: list, stats_b: list, alpha: float) -> None:
    """Correct the model's current weights (θ(α)) in place: each hidden unit gets the endpoints'
    interpolated mean and standard deviation on `batches`."""
    for layer, (ma, sa), (mb, sb) in zip(hidden_layers(model), stats_a, stats_b):
        mean, std = unit_stats(model, [layer], batches, prepare)[0]
        t_mean, t_std = (1 - alpha) * ma + alpha * mb, (1 - alpha) * sa + alpha * sb
        scale = (t_std / std.clamp_min(EPS)).to(layer.weight.dtype)
        layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
        if layer.bias is not None:  # without a bias the unit's mean is only scaled (about zero)
            layer.bias.copy_(((layer.bias - mean) * scale + t_mean).to(layer.bias.dtype))


def repair_point(evaluator, a: list, b: list, alpha: float, num_batches: int, pair_key: str | None) -> None:
    """The evaluator's model at θ(α) (set by the caller), corrected by REPAIR; the endpoints' unit
    statistics are measured once per pair."""
    batches = evaluator.fixed_batches(num_batches)  # the batches bn = "reset" re-estimates on
    key = (pair_key, num_batches)
    cached = getattr(evaluator, "_repair_stats", None)
    if pair_key is None or cached is None or cached[0] != key:
        layers = hidden_layers(evaluator.model)
        ends = []
        for tensors in (a, b):
            evaluator.set_weights(tensors)
            ends.append(unit_stats(evaluator.model, layers, batches, evaluator.prepare))
        cached = evaluator._repair_stats = (key, ends)
        evaluator.set_alpha(a, b, alpha)
    repair(evaluator.model, batches, evaluator.prepare, *cached[1], alpha)
