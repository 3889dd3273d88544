"""Permutation alignment of one network to another before interpolating (I5 with `align = "weights"`).

Weight matching (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin", Alg. 1): hidden units of θ_b are
permuted so that its weights best match θ_a's — for each hidden layer ℓ in turn, the permutation
P_ℓ maximising ⟨W_a^ℓ, P_ℓ W_b^ℓ P_{ℓ−1}^T⟩ + ⟨W_a^{ℓ+1}, P_{ℓ+1} W_b^{ℓ+1} P_ℓ^T⟩ (+ the layer's bias and
BatchNorm vectors) is a linear assignment, solved until no permutation changes. A permutation of
hidden units leaves the function unchanged, so θ_b keeps its loss; only the line between them moves.

Supported: Hugging Face GPT-2 and Llama-style language models, by groups written from their blocks
(lm_groups.py), and any network built from standard layers whose graph torch.fx can trace — MLPs, VGGs, the
CIFAR ResNets, torchvision's ResNets (basic and bottleneck blocks) and Vision Transformers among them:
the permutation groups are read from the graph (`graph_spec.derive_spec`: one group per layer's
outputs, one shared by every layer that adds into the same residual stream, as skip connections
require, attention heads permuted as units). A graph that does something else to the unit axis (a
concatenation of channels, reshapes such as maxout's) is refused with the node that stops it. (The
hand-written groups of the chains and the CIFAR ResNets that the derived ones are tested against live in
tests/test_align.py.)
BatchNorm running statistics are permuted with their units; with `bn = "reset"` they are
re-estimated at every α on the aligned line, the statistics reset of Jordan et al. 2023 (REPAIR) for
BN nets; their per-unit correction for nets without BatchNorm is `bn = "repair"` (evaluate/repair.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raysweep.evaluate.graph_axes import Segments
from raysweep.evaluate.graph_spec import GraphError, derive_spec
from raysweep.evaluate.lm_groups import UnsupportedModel, hf_spec, model_type


class AlignmentError(ValueError):
    """A model whose hidden units cannot be matched layer by layer."""


def permutation_spec(model: nn.Module, in_shape: tuple[int, ...] | None = None) -> dict[str, tuple]:
    """For every tensor that hidden-unit permutations touch: the permutation group of each axis (None:
    not permuted; (group, k): an axis of k inputs per unit, after a flatten; Segments: equal parts of the
    axis with a group each, attention's q, k and v rows), read from the model's graph (`in_shape`: the
    input's shape without the batch, which transformers need)."""
    if model_type(model) is not None:  # a transformers LM: groups written from its blocks (torch.fx cannot trace it)
        try:
            return hf_spec(model)
        except UnsupportedModel as exc:
            raise AlignmentError(f"align = 'weights' cannot permute the units of this language model: {exc}. "
                                 f"Drop `align` from the sweep.") from None
    try:
        spec = derive_spec(model, in_shape)
    except GraphError as exc:
        raise AlignmentError(f"align = 'weights' cannot permute the units of {type(model).__name__}: {exc}. Drop "
                             f"`align` from the sweep.") from None
    if not any(g is not None for axes in spec.values() for g in axes):
        raise AlignmentError("align = 'weights' needs at least one hidden layer")
    return spec


def _group(entry) -> tuple[str | None, int]:
    """(group, k) of a plain spec entry: k inputs per unit (a flatten's positions), 1 for most axes."""
    return entry if isinstance(entry, tuple) else (entry, 1)


def unit_groups(spec: dict, state: dict) -> dict[str, tuple[int, list[tuple[str, int, int | None]]]]:
    """group -> (size, [(tensor, axis, segment or None)]); sizes must agree wherever a group appears."""
    out: dict[str, tuple[int, list]] = {}
    for name, axes in spec.items():
        for ax, entry in enumerate(axes):
            parts = [(g, 1, j) for j, g in enumerate(entry.groups)] if isinstance(entry, Segments) else [
                (*_group(entry), None)]
            for g, k, seg in parts:
                if g is None:
                    continue
                size = state[name].shape[ax] // (len(parts) if seg is not None else k)
                if g in out and out[g][0] != size:
                    raise AlignmentError(f"{name}: axis {ax} has {size} units where group {g} has {out[g][0]}")
                out.setdefault(g, (size, []))[1].append((name, ax, seg))
    return out


def _apply(spec: dict, name: str, t: torch.Tensor, perms: dict, skip: int | None = None) -> torch.Tensor:
    for ax, entry in enumerate(spec[name]):
        if ax == skip or entry is None:
            continue
        if isinstance(entry, Segments):  # each part by its own group
            n = t.shape[ax] // len(entry.groups)
            index = torch.cat([perms[g] + j * n for j, g in enumerate(entry.groups)])
        else:
            g, k = _group(entry)
            index = (perms[g][:, None] * k + torch.arange(k)).reshape(-1)  # a unit's k inputs move together
        t = t.index_select(ax, index.to(t.device))
    return t


def _rows(t: torch.Tensor, ax: int, n: int, parts: int, seg: int | None) -> torch.Tensor:
    """The n units of axis `ax` (of segment `seg` of `parts`), one row of everything each holds."""
    t = t.movedim(ax, 0)
    return t.reshape(n, -1) if seg is None else t.reshape(parts, n, -1)[seg]


def attention_heads(spec: dict) -> dict[str, tuple[str, int]]:
    """An attention's q/k group -> (its v group, the number of heads): the two groups whose heads move alike,
    read from the spec's typed Segments records."""
    return {seg.groups[0]: (seg.groups[-1], seg.heads) for axes in spec.values() for seg in axes
            if isinstance(seg, Segments) and seg.heads}


def head_assignment(cost_qk: np.ndarray, cost_v: np.ndarray, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best permutations of an attention's q/k and v rows that move heads as units and permute each
    head's dimensions inside it: for every pair of heads the best inner assignments (two small linear
    assignments), then the heads' assignment on their totals — the exact optimum of both groups at once."""
    from scipy.optimize import linear_sum_assignment

    d = len(cost_qk) // heads
    total, inner = np.zeros((heads, heads)), {}
    for h in range(heads):
        for h2 in range(heads):
            for key, c in (("qk", cost_qk), ("v", cost_v)):
                block = c[h * d:(h + 1) * d, h2 * d:(h2 + 1) * d]
                rows, cols = linear_sum_assignment(block, maximize=True)
                total[h, h2] += block[rows, cols].sum()
                inner[key, h, h2] = cols
    _, match = linear_sum_assignment(total, maximize=True)
    return tuple(torch.as_tensor(np.concatenate([match[h] * d + inner[key, h, match[h]] for h in range(heads)]))
                 for key in ("qk", "v"))


def weight_matching(model: nn.Module, a: dict, b: dict, max_iter: int = 100, seed: int = 0,
                    in_shape: tuple[int, ...] | None = None) -> dict:
    """The permutations (group -> index tensor) that align state dict b to a (Git Re-Basin, Alg. 1); an
    attention's q/k and v groups are solved together (`head_assignment`)."""
    from scipy.optimize import linear_sum_assignment

    spec = {k: axes for k, axes in permutation_spec(model, in_shape).items() if k in a}  # a tied alias once
    fa = {k: a[k].detach().double().cpu() for k in spec}
    fb = {k: b[k].detach().double().cpu() for k in spec}
    groups = unit_groups(spec, fa)
    perms = {g: torch.arange(n) for g, (n, _) in groups.items()}

    def cost(g: str) -> np.ndarray:
        n, refs = groups[g]
        c = torch.zeros(n, n, dtype=torch.float64)
        for name, ax, seg in refs:
            parts = len(spec[name][ax].groups) if seg is not None else 1
            wb = _apply(spec, name, fb[name], perms, skip=ax)
            c += _rows(fa[name], ax, n, parts, seg) @ _rows(wb, ax, n, parts, seg).T
        return c.numpy()

    rng = np.random.default_rng(seed)
    attention = attention_heads(spec)
    v_groups = {v for v, _ in attention.values()}
    names = sorted(g for g in groups if g not in v_groups)  # an attention's v group goes with its q/k group
    for _ in range(max_iter):
        changed = False
        for g in (names[i] for i in rng.permutation(len(names))):
            if g in attention:
                v, heads = attention[g]
                new = dict(zip((g, v), head_assignment(cost(g), cost(v), heads)))
            else:
                new = {g: torch.as_tensor(linear_sum_assignment(cost(g), maximize=True)[1])}
            for key, p in new.items():
                if not torch.equal(p, perms[key]):
                    perms[key], changed = p, True
        if not changed:
            break
    return perms


def random_permutations(spec: dict, state: dict, generator: torch.Generator) -> dict:
    """Random permutations of every group that keep the network's function (attention: heads as units,
    dimensions within each head; the q/k and v groups move their heads alike) — for tests of symmetry."""
    out = {}
    attention = attention_heads(spec)
    v_groups = {v for v, _ in attention.values()}
    for g, (n, _) in sorted(unit_groups(spec, state).items()):
        if g in v_groups:
            continue
        if g not in attention:
            out[g] = torch.randperm(n, generator=generator)
            continue
        v, h = attention[g]
        d = n // h
        order = torch.randperm(h, generator=generator)
        for key in (g, v):
            out[key] = torch.cat([order[i] * d + torch.randperm(d, generator=generator) for i in range(h)])
    return out


def permute(model: nn.Module, state: dict, perms: dict, in_shape: tuple[int, ...] | None = None) -> dict:
    """State dict with every group's units reordered by its permutation (a function-preserving map)."""
    spec = permutation_spec(model, in_shape)
    return {k: _apply(spec, k, v, perms) if k in spec else v for k, v in state.items()}


def align(model: nn.Module, a: dict, b: dict, in_shape: tuple[int, ...] | None = None) -> dict:
    """b with its hidden units permuted to match a (weight matching); `in_shape`, the input's shape
    without the batch, lets the graph be followed through reshapes (transformers need it)."""
    return permute(model, b, weight_matching(model, a, b, in_shape=in_shape), in_shape)
