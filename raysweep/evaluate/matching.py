"""How θ_b's hidden units are matched to θ_a's before interpolating (a sweep's `align`): "weights" (weight
matching, align.py) or "activations" (`match`); and activation matching itself.

Activation matching (Ainsworth, Hayase & Srinivasa 2023, §3.1; Jordan et al. 2023 use it with REPAIR):
θ_b's hidden units permuted so that their activations on fixed training batches best correlate with θ_a's.

For every permutation group the model's graph defines (graph_spec: the same groups weight matching
permutes), the activations of both networks are recorded at every node of the traced forward pass that
carries the group on its unit axis (a layer's outputs, after BatchNorm, after the nonlinearity; every
block's output of a residual stream) — flattened over the batch and any spatial or token positions — and
their Pearson correlations (each node's from its own float64 sums over the batches) summed over the nodes. Each group's
permutation is then the linear assignment of the largest total correlation, in one pass (no iteration:
the activations of θ_a and θ_b do not depend on the permutation). Multi-head attention's q/k and v groups
are matched on q = x·W_qᵀ + b_q, k, v computed from the attention's input, heads as units
(align.head_assignment). Every node's output is recorded only while its correlations are summed."""
from __future__ import annotations

import copy
import logging
from typing import Callable

import numpy as np
import torch
from torch import nn

from raysweep.data.batches import train_batches
from raysweep.evaluate.align import align, attention_heads, head_assignment, permutation_spec, permute, unit_groups
from raysweep.evaluate.graph_axes import FIXED, Segments
from raysweep.evaluate.graph_spec import derive_walk
from raysweep.evaluate.sums import BN_RESET_SEED


def match(model: nn.Module, a: dict, b: dict, how: str, in_shape: tuple[int, ...] | None = None,
          inputs: Callable[[], list[torch.Tensor]] | None = None) -> dict:
    """State dict b with its hidden units permuted to match a's, by weight or activation matching
    (`inputs()`: the prepared training batches activations are recorded on, `matching_inputs`)."""
    if how == "weights":
        return align(model, a, b, tuple(in_shape) if in_shape else None)
    if how != "activations" or inputs is None:
        raise ValueError(f"align = {how!r}: give 'weights', or 'activations' with the batches to match on")
    return permute(model, b, activation_matching(model, a, b, inputs(), in_shape), in_shape)


def matching_inputs(data, batch_size: int, count: int, device) -> list[torch.Tensor]:
    """The fixed training batches activations are matched on: the first `count` of the order BatchNorm
    statistics are re-estimated in (BN_RESET_SEED), prepared in float32 on `device` — the same on every
    process, so a curve's bend and its line see the same matched θ_b."""
    batches = train_batches(data, batch_size, BN_RESET_SEED, 0)
    return [data.prepare(x.to(device)) for (x, _), _ in zip(batches, range(count))]


class Correlation:
    """Running float64 sums for the n × n correlation of two activations' units."""

    def __init__(self, n: int, device):
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)  # noqa: E731
        self.count, self.sa, self.sb, self.saa, self.sbb, self.sab = 0, z(n), z(n), z(n), z(n), z(n, n)

    def add(self, xa: torch.Tensor, xb: torch.Tensor) -> None:
        """Rows are samples, columns units."""
        xa, xb = xa.double(), xb.double()
        self.count += len(xa)
        self.sa += xa.sum(0)
        self.sb += xb.sum(0)
        self.saa += xa.square().sum(0)
        self.sbb += xb.square().sum(0)
        self.sab += xa.T @ xb

    def matrix(self) -> np.ndarray:
        n = self.count
        ma, mb = self.sa / n, self.sb / n
        cov = self.sab / n - ma[:, None] * mb[None, :]
        sa = (self.saa / n - ma.square()).clamp_min(0).sqrt()
        sb = (self.sbb / n - mb.square()).clamp_min(0).sqrt()
        return (cov / (sa[:, None] * sb[None, :] + 1e-12)).cpu().numpy()


def _rows(t: torch.Tensor, axis: int) -> torch.Tensor:
    return t.movedim(axis, -1).reshape(-1, t.shape[axis])


def _recorded(gm: nn.Module, wanted: set, x: torch.Tensor) -> dict:
    """The outputs of the `wanted` nodes (and of the attention nodes' query inputs) in one forward of x."""
    from torch import fx

    out = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            if node.name in wanted:  # a copy: a later in-place op (an inplace ReLU) would change it
                out[node.name] = value.clone()
            return value

    Recorder(gm).run(x)
    return out


def activation_matching(model: nn.Module, a: dict, b: dict, inputs: list[torch.Tensor],
                        in_shape: tuple[int, ...] | None = None) -> dict:
    """The permutations (group -> index tensor) that align state dict b to a by the correlation of their
    activations on `inputs` (prepared batches, on the device the model is to run on)."""
    from scipy.optimize import linear_sum_assignment

    spec = permutation_spec(model, in_shape)
    groups = unit_groups(spec, a)
    gm, walk = derive_walk(model, in_shape)
    device = inputs[0].device
    nets = []
    for state in (a, b):
        net = copy.deepcopy(gm)  # (the model may be on the meta device: the state's tensors are assigned)
        net.load_state_dict({k: v.to(device) for k, v in state.items()}, assign=True)
        nets.append(net.to(device).eval())
    record = {}  # node name -> (group, unit axis): the activations correlated
    attention = {}  # attention node name -> (its module, its query input's name, Segments (q/k, q/k, v groups))
    for node, g in walk.group_of.items():
        root = walk.groups.find(g) if g is not None else FIXED
        if root in groups and node in walk.unit_axis and walk.shapes[node][walk.unit_axis[node]] == groups[root][0]:
            record[node.name] = (root, walk.unit_axis[node])
    for node in walk.attention:
        seg = spec[f"{node.target}.in_proj_weight"][0]
        if isinstance(seg, Segments) and node.args and node.args[0] in walk.unit_axis:
            attention[node.name] = (node.target, node.args[0].name, seg)
    stats: dict[tuple, Correlation] = {}  # (group, node, part): one correlation per place a group's units are seen
    add = lambda key, xa, xb: stats.setdefault(key, Correlation(xa.shape[1], device)).add(xa, xb)  # noqa: E731
    with torch.no_grad():
        for x in inputs:
            acts = [_recorded(net, set(record) | {q for _, q, _ in attention.values()}, x) for net in nets]
            for name, (g, axis) in record.items():
                add((g, name, 0), _rows(acts[0][name], axis), _rows(acts[1][name], axis))
            for target, query, seg in attention.values():
                qkv = []
                for net, act in zip(nets, acts):
                    m = net.get_submodule(target)
                    qkv.append(nn.functional.linear(act[query], m.in_proj_weight, m.in_proj_bias).chunk(3, -1))
                for part, g in enumerate(seg.groups):
                    add((g, target, part), _rows(qkv[0][part], -1), _rows(qkv[1][part], -1))
    cost = {}
    for (g, _, _), c in stats.items():  # the correlations summed over the places
        cost[g] = cost.get(g, 0) + c.matrix()
    missing = sorted(set(groups) - set(cost))
    if missing:
        logging.getLogger("raysweep").warning("activation matching: no activations carry the unit groups %s; "
                                              "they keep their order", missing)
    heads = attention_heads(spec)
    v_groups = {v for v, _ in heads.values()}
    perms = {g: torch.arange(n) for g, (n, _) in groups.items()}
    for g in sorted(set(cost) - v_groups):
        if g in heads:
            v, h = heads[g]
            perms[g], perms[v] = head_assignment(cost[g], cost[v], h)
        else:
            perms[g] = torch.as_tensor(linear_sum_assignment(cost[g], maximize=True)[1])
    return perms
