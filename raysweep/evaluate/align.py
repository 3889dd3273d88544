"""Permutation alignment of one network to another before interpolating (I5 with `align = "weights"`).

Weight matching (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin", Alg. 1): hidden units of θ_b are
permuted so that its weights best match θ_a's — for each hidden layer ℓ in turn, the permutation
P_ℓ maximising ⟨W_a^ℓ, P_ℓ W_b^ℓ P_{ℓ−1}^T⟩ + ⟨W_a^{ℓ+1}, P_{ℓ+1} W_b^{ℓ+1} P_ℓ^T⟩ (+ the layer's bias and
BatchNorm vectors) is a linear assignment, solved until no permutation changes. A permutation of
hidden units leaves the function unchanged, so θ_b keeps its loss; only the line between them moves.

Supported: any network built from standard layers whose graph torch.fx can trace — MLPs, VGGs, the
CIFAR ResNets, torchvision's ResNets (basic and bottleneck blocks) and Vision Transformers among them:
the permutation groups are read from the graph (`graph_spec.derive_spec`: one group per layer's
outputs, one shared by every layer that adds into the same residual stream, as skip connections
require, attention heads permuted as units). A graph that does something else to the unit axis (a
concatenation of channels, reshapes such as maxout's) is refused with the node that stops it. The hand-written specs of the chains and the CIFAR ResNets are
kept (`handwritten_spec`) as the reference the derived groups are tested against.
BatchNorm running statistics are permuted with their units; with `bn = "reset"` they are
re-estimated at every α on the aligned line, the statistics reset of Jordan et al. 2023 (REPAIR) for
BN nets; their per-unit correction for nets without BatchNorm is `bn = "repair"` (evaluate/repair.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raysweep.evaluate.graph_spec import GraphError, derive_spec
from raysweep.models import CifarResNet, CifarVGG, Maxout

WEIGHTED = (nn.Linear, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class AlignmentError(ValueError):
    """A model whose hidden units cannot be matched layer by layer."""


def chain(model: nn.Module) -> list[tuple[str, list[str]]]:
    """[(weighted layer's name, names of the BatchNorms on its outputs)] in forward order."""
    if not isinstance(model, (nn.Sequential, CifarVGG)) or any(isinstance(m, Maxout) for m in model.modules()):
        raise AlignmentError(
            f"align = 'weights' matches hidden units layer by layer, which needs a chain of layers (an MLP or the "
            f"CIFAR VGG-16) or a CIFAR ResNet; {type(model).__name__} is none of them (maxout networks and other "
            f"residual networks are not supported). Drop `align` from the sweep.")
    out: list[tuple[str, list[str]]] = []
    for name, m in model.named_modules():
        if isinstance(m, WEIGHTED):
            out.append((name, []))
        elif isinstance(m, NORMS):
            if not out:
                raise AlignmentError(f"{name}: a BatchNorm before any weighted layer cannot be aligned")
            out[-1][1].append(name)
        elif not list(m.children()) and any(True for _ in m.parameters(recurse=False)):
            raise AlignmentError(f"{name} ({type(m).__name__}) has weights align = 'weights' does not know how to permute")
    if len(out) < 2:
        raise AlignmentError("align = 'weights' needs at least one hidden layer")
    return out


def permutation_spec(model: nn.Module, in_shape: tuple[int, ...] | None = None) -> dict[str, tuple]:
    """For every tensor that hidden-unit permutations touch: the permutation group of each axis (None:
    not permuted; (group, k): an axis of k inputs per unit, after a flatten; (group, k, s): s segments of
    them, the q, k, v rows of attention heads), read from the model's graph (`in_shape`: the input's
    shape without the batch, which transformers need)."""
    try:
        spec = derive_spec(model, in_shape)
    except GraphError as exc:
        raise AlignmentError(f"align = 'weights' cannot permute the units of {type(model).__name__}: {exc}. Drop "
                             f"`align` from the sweep.") from None
    if not any(g is not None for axes in spec.values() for g in axes):
        raise AlignmentError("align = 'weights' needs at least one hidden layer")
    return spec


def handwritten_spec(model: nn.Module) -> dict[str, tuple[str | None, ...]]:
    """The groups written out by hand for the chains and the CIFAR ResNets (the reference for
    `permutation_spec`). Chains: one group per hidden layer. CIFAR ResNets: one group per residual stream (the
    stem, every block's second conv and the downsampling shortcuts of a stage write the same channels,
    so they share it) and one per block's inner channels (conv1 → conv2)."""
    state = model.state_dict()
    spec: dict[str, tuple[str | None, ...]] = {}

    def unit(prefix: str, out_g: str | None, in_g: str | None) -> None:
        w = state[f"{prefix}.weight"]
        spec[f"{prefix}.weight"] = (out_g, in_g) + (None,) * (w.dim() - 2)
        if f"{prefix}.bias" in state:
            spec[f"{prefix}.bias"] = (out_g,)

    def norm(prefix: str, g: str) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            if f"{prefix}.{k}" in state:
                spec[f"{prefix}.{k}"] = (g,)

    if isinstance(model, CifarResNet):
        stream = "stream0"
        unit("conv", stream, None)
        norm("bn", stream)
        for j, block in enumerate(model.blocks):
            inner, out = f"block{j}", stream
            if len(block.shortcut):  # a downsampling block starts a new stream
                out = f"stream{j + 1}"
                unit(f"blocks.{j}.shortcut.0", out, stream)
                norm(f"blocks.{j}.shortcut.1", out)
            unit(f"blocks.{j}.conv1", inner, stream)
            norm(f"blocks.{j}.bn1", inner)
            unit(f"blocks.{j}.conv2", out, inner)
            norm(f"blocks.{j}.bn2", out)
            stream = out
        unit("fc", None, stream)
        return spec
    layers = chain(model)
    for i, (name, norms) in enumerate(layers):
        out_g = f"h{i}" if i + 1 < len(layers) else None
        unit(name, out_g, f"h{i - 1}" if i else None)
        for n in norms:
            norm(n, out_g)
    return spec


def _group(entry) -> tuple[str | None, int, int]:
    """(group, k, s) of a spec entry: s segments of units × k entries (a flatten's positions, a head's
    dimensions; q, k and v), 1 and 1 for most axes."""
    if isinstance(entry, tuple):
        return (*entry, 1) if len(entry) == 2 else entry
    return entry, 1, 1


def _groups(spec: dict, state: dict) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """group -> (size, [(tensor, axis)]); sizes must agree wherever a group appears."""
    out: dict[str, tuple[int, list]] = {}
    for name, axes in spec.items():
        for ax, entry in enumerate(axes):
            g, k, s = _group(entry)
            if g is None:
                continue
            size = state[name].shape[ax] // (k * s)
            if g in out and out[g][0] != size:
                raise AlignmentError(f"{name}: axis {ax} has {size} units where group {g} has {out[g][0]}")
            out.setdefault(g, (size, []))[1].append((name, ax))
    return out


def _apply(spec: dict, name: str, t: torch.Tensor, perms: dict, skip: int | None = None) -> torch.Tensor:
    for ax, entry in enumerate(spec[name]):
        g, k, s = _group(entry)
        if g is not None and ax != skip:
            n = len(perms[g])
            index = (perms[g][:, None] * k + torch.arange(k)).reshape(-1)  # a unit's k inputs move together
            index = torch.cat([index + j * n * k for j in range(s)])  # in each segment alike
            t = t.index_select(ax, index.to(t.device))
    return t


def _by_unit(t: torch.Tensor, ax: int, n: int, s: int) -> torch.Tensor:
    """t's axis `ax` (s segments of n units) as n rows of everything each unit holds."""
    return t.movedim(ax, 0).reshape(s, n, -1).transpose(0, 1).reshape(n, -1)


def weight_matching(model: nn.Module, a: dict, b: dict, max_iter: int = 100, seed: int = 0,
                    in_shape: tuple[int, ...] | None = None) -> dict:
    """The permutations (group -> index tensor) that align state dict b to a (Git Re-Basin, Alg. 1)."""
    from scipy.optimize import linear_sum_assignment

    spec = permutation_spec(model, in_shape)
    fa = {k: a[k].detach().double().cpu() for k in spec}
    fb = {k: b[k].detach().double().cpu() for k in spec}
    groups = _groups(spec, fa)
    perms = {g: torch.arange(n) for g, (n, _) in groups.items()}
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    for _ in range(max_iter):
        changed = False
        for g in (names[i] for i in rng.permutation(len(names))):
            n, refs = groups[g]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for name, ax in refs:
                s = _group(spec[name][ax])[2]
                wa = _by_unit(fa[name], ax, n, s)
                wb = _by_unit(_apply(spec, name, fb[name], perms, skip=ax), ax, n, s)
                cost += wa @ wb.T
            _, col = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(col)
            if not torch.equal(new, perms[g]):
                perms[g], changed = new, True
        if not changed:
            break
    return perms


def permute(model: nn.Module, state: dict, perms: dict, in_shape: tuple[int, ...] | None = None) -> dict:
    """State dict with every group's units reordered by its permutation (a function-preserving map)."""
    spec = permutation_spec(model, in_shape)
    return {k: _apply(spec, k, v, perms) if k in spec else v for k, v in state.items()}


def align(model: nn.Module, a: dict, b: dict, in_shape: tuple[int, ...] | None = None) -> dict:
    """b with its hidden units permuted to match a (weight matching); `in_shape`, the input's shape
    without the batch, lets the graph be followed through reshapes (transformers need it)."""
    return permute(model, b, weight_matching(model, a, b, in_shape=in_shape), in_shape)
