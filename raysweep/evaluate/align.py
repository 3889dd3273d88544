"""Permutation alignment of one network to another before interpolating (I5 with `align = "weights"`).

Weight matching (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin", Alg. 1): hidden units of θ_b are
permuted so that its weights best match θ_a's — for each hidden layer ℓ in turn, the permutation
P_ℓ maximising ⟨W_a^ℓ, P_ℓ W_b^ℓ P_{ℓ−1}^T⟩ + ⟨W_a^{ℓ+1}, P_{ℓ+1} W_b^{ℓ+1} P_ℓ^T⟩ (+ the layer's bias and
BatchNorm vectors) is a linear assignment, solved until no permutation changes. A permutation of
hidden units leaves the function unchanged, so θ_b keeps its loss; only the line between them moves.

Supported: chains — MLPs (Linear with optional BatchNorm1d) and the CIFAR VGG-16 (Conv2d+BatchNorm2d,
then Linear): every unit's outgoing channels feed only the next weighted layer. Residual networks
share permutations across skip connections and are refused (with REPAIR's statistics reset, Jordan
et al. 2023, they need a permutation per residual stream — not built). BatchNorm running statistics
are permuted with their units (for BN nets, re-estimating them on the aligned line is `bn = "reset"`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

WEIGHTED = (nn.Linear, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class AlignmentError(ValueError):
    """A model whose hidden units cannot be matched layer by layer."""


def chain(model: nn.Module) -> list[tuple[str, list[str]]]:
    """[(weighted layer's name, names of the BatchNorms on its outputs)] in forward order."""
    from raysweep.models import CifarVGG, Maxout

    if not isinstance(model, (nn.Sequential, CifarVGG)) or any(isinstance(m, Maxout) for m in model.modules()):
        raise AlignmentError(
            f"align = 'weights' matches hidden units layer by layer, which needs a chain of layers (an MLP or the "
            f"CIFAR VGG-16); {type(model).__name__} is not one (residual and maxout networks are not supported). "
            f"Drop `align` from the sweep.")
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


def _vectors(state: dict, norms: list[str]) -> list[torch.Tensor]:
    return [state[f"{n}.{k}"] for n in norms for k in ("weight", "bias", "running_mean", "running_var")
            if f"{n}.{k}" in state]


def _in_view(w: torch.Tensor, n_in: int) -> torch.Tensor:
    """A layer's weight as (outputs, n_in, rest): a Linear after a flattened conv sees each channel
    as a block of its inputs."""
    return w.reshape(w.shape[0], n_in, -1)


def weight_matching(model: nn.Module, a: dict, b: dict, max_iter: int = 100, seed: int = 0) -> list[torch.Tensor]:
    """The permutations (one index tensor per hidden layer) that align state dict b to a."""
    from scipy.optimize import linear_sum_assignment

    layers = chain(model)
    fa = {k: v.detach().double().cpu() for k, v in a.items() if v.is_floating_point()}
    fb = {k: v.detach().double().cpu() for k, v in b.items() if v.is_floating_point()}
    sizes = [fa[f"{name}.weight"].shape[0] for name, _ in layers[:-1]]
    perms = [torch.arange(n) for n in sizes]
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        changed = False
        for i in rng.permutation(len(sizes)):
            name, norms = layers[i]
            n = sizes[i]
            wa, wb = fa[f"{name}.weight"].reshape(n, -1), fb[f"{name}.weight"]
            if i > 0:  # this layer's inputs are the previous layer's permuted units
                wb = _in_view(wb, sizes[i - 1])[:, perms[i - 1]]
            cost = wa @ wb.reshape(n, -1).T
            for va, vb in zip(_vectors(fa, [name] + norms), _vectors(fb, [name] + norms)):
                if va.dim() == 1 and va.shape[0] == n:  # bias and BatchNorm vectors
                    cost += torch.outer(va, vb)
            nxt = layers[i + 1][0]
            wa2, wb2 = _in_view(fa[f"{nxt}.weight"], n), _in_view(fb[f"{nxt}.weight"], n)
            if i + 1 < len(sizes):
                wb2 = wb2[perms[i + 1]]
            cost += torch.einsum("oir,ojr->ij", wa2, wb2)
            _, col = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(col)
            if not torch.equal(new, perms[i]):
                perms[i], changed = new, True
        if not changed:
            break
    return perms


def permute(model: nn.Module, state: dict, perms: list[torch.Tensor]) -> dict:
    """State dict with each hidden layer's units reordered by its permutation (a function-preserving map)."""
    layers = chain(model)
    out = dict(state)
    for i, p in enumerate(perms):
        name, norms = layers[i]
        for key in [f"{name}.weight", f"{name}.bias"] + [f"{n}.{k}" for n in norms
                                                         for k in ("weight", "bias", "running_mean", "running_var")]:
            if key in out and out[key] is not None:
                out[key] = out[key][p.to(out[key].device)]
        nxt = f"{layers[i + 1][0]}.weight"
        w = out[nxt]
        out[nxt] = _in_view(w, len(p))[:, p.to(w.device)].reshape(w.shape)
    return out


def align(model: nn.Module, a: dict, b: dict) -> dict:
    """b with its hidden units permuted to match a (weight matching)."""
    return permute(model, b, weight_matching(model, a, b))
