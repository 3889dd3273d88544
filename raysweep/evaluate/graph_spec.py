"""Permutation groups read from a model's graph (torch.fx), for any network built from standard layers.

Every tensor in the traced forward pass carries the group of its channel axis. A Linear or Conv layer
starts a new group on its outputs (its weight's axis 0), reading its input's group on axis 1;
BatchNorm and LayerNorm, activations, dropout, pooling and spatial means pass their input's group on;
an addition (a residual connection) makes its two inputs' groups one, as a skip connection needs the
same permutation on both sides; a flatten of C channels × k positions hands the group on expanded k
times (a unit's k inputs move together). The network's input and output are fixed (the union-find's
FIXED), so every group joined to them is not permuted. Whatever else the graph does to the channel
axis (a concatenation, a reshape, attention, a custom module with weights) stops the derivation with
an error naming the node and its module. Torchvision's ResNets (basic and bottleneck blocks), VGG and
MLPs derive the same groups as the hand-written specs of `align.py` where those exist.
"""
from __future__ import annotations

import operator

import torch
from torch import nn

FIXED = "fixed"
PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Hardswish,
                nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {torch.relu, torch.tanh, torch.sigmoid, nn.functional.relu, nn.functional.gelu, nn.functional.silu,
                  nn.functional.dropout, nn.functional.avg_pool2d, nn.functional.max_pool2d,
                  nn.functional.adaptive_avg_pool2d, nn.functional.leaky_relu, torch.nn.functional.relu6}
PASS_METHODS = {"relu", "relu_", "tanh", "sigmoid", "contiguous", "clone", "float", "to"}
MERGE = {operator.add, operator.iadd, torch.add, operator.sub, torch.sub}
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)


class GraphError(ValueError):
    """A graph whose channels cannot be followed (the message names the node and the module)."""


class _Groups:
    """Union-find over group names; FIXED is a group like the others."""

    def __init__(self):
        self.parent = {FIXED: FIXED}

    def new(self, name: str) -> str:
        self.parent.setdefault(name, name)
        return name

    def find(self, g: str) -> str:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: str, b: str) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # FIXED wins: a group joined to the input or output is not permuted
            keep, drop = (ra, rb) if ra == FIXED or (rb != FIXED and ra < rb) else (rb, ra)
            self.parent[drop] = keep
            return keep
        return ra


def _module_label(gm, node) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(gm.get_submodule(node.target)).__name__})"
    return f"{node.name} ({getattr(node.target, '__name__', node.target)})"


def derive_spec(model: nn.Module) -> dict[str, tuple]:
    """{state-dict tensor: per-axis group} for `model`; an axis entry is None (not permuted), a group
    name, or (group, k) for an axis of C·k inputs that a flatten made of a C-unit group."""
    from torch import fx

    class Tracer(fx.Tracer):  # remembers the module being traced, to name the one a failure is in
        def __init__(self):
            super().__init__()
            self.stack: list[str] = []

        def call_module(self, m, forward, args, kwargs):
            self.stack.append(f"{self.path_of_module(m) or '(the model)'} ({type(m).__name__})")
            out = super().call_module(m, forward, args, kwargs)
            self.stack.pop()
            return out

    tracer = Tracer()
    try:
        gm = fx.GraphModule(model, tracer.trace(model))
    except Exception as exc:  # data-dependent control flow, iteration over a tensor, unsupported Python
        where = tracer.stack[-1] if tracer.stack else type(model).__name__
        raise GraphError(f"{where} cannot be traced by torch.fx ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    groups, spec = _Groups(), {}
    state = model.state_dict()
    of: dict = {}  # node -> its channel group (None: not a tensor we follow)

    def param(prefix: str, names, axes) -> None:
        for n in names:
            key = f"{prefix}.{n}" if prefix else n
            if key in state:
                spec[key] = axes + (None,) * (state[key].dim() - len(axes))

    for node in gm.graph.nodes:
        found: list = []
        fx.node.map_arg((node.args, node.kwargs), found.append)  # every node it reads, nested lists included
        ins = [a for a in found if of.get(a) is not None]
        if node.op == "placeholder":
            of[node] = FIXED
        elif node.op == "output":
            for a in ins:
                groups.union(of[a], FIXED)
        elif node.op == "get_attr":
            raise GraphError(f"{node.target}: a tensor used directly in forward (not through a layer); "
                             f"alignment does not follow it")
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            src = of.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and getattr(m, "groups", 1) == 1:
                out = groups.new(node.target)
                param(node.target, ["weight"], (out, src if src is not None else FIXED))
                param(node.target, ["bias"], (out,))
                of[node] = out
            elif isinstance(m, NORMS):
                if src is None:
                    raise GraphError(f"{_module_label(gm, node)} normalizes a tensor alignment does not follow")
                param(node.target, ["weight", "bias", "running_mean", "running_var"], (src,))
                of[node] = src
            elif isinstance(m, nn.Flatten):
                if m.start_dim != 1:
                    raise GraphError(f"{_module_label(gm, node)}: a flatten from dimension {m.start_dim}")
                of[node] = src  # C channels × k positions: a Linear reading it sees each unit k times
            elif isinstance(m, PASS_MODULES) or (isinstance(m, nn.Sequential) and not len(m)):
                of[node] = src
            else:
                raise GraphError(f"{_module_label(gm, node)} is not a layer alignment knows how to permute "
                                 f"through (Linear, Conv, BatchNorm, LayerNorm, activations, pooling, residual "
                                 f"additions)")
        elif node.op == "call_function" and node.target in MERGE:
            tensors = [a for a in node.args if isinstance(a, fx.Node)]
            if any(of.get(a) is None for a in tensors):
                raise GraphError(f"{_module_label(gm, node)} adds a tensor alignment does not follow")
            g = of[tensors[0]]
            for a in tensors[1:]:
                g = groups.union(g, of[a])
            of[node] = g
        elif node.op in ("call_function", "call_method") and (node.target in PASS_FUNCTIONS or
                                                              node.target in PASS_METHODS):
            of[node] = of.get(node.args[0]) if node.args else None
        elif node.target in (torch.flatten, "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            if start != 1:
                raise GraphError(f"{_module_label(gm, node)}: a flatten from dimension {start} mixes the batch "
                                 f"or channel axis")
            of[node] = of.get(node.args[0])
        elif node.target in ("mean", torch.mean):
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if dims is None or 1 in (dims if isinstance(dims, (tuple, list)) else (dims,)):
                raise GraphError(f"{_module_label(gm, node)}: a mean over the channel axis")
            of[node] = of.get(node.args[0])  # a mean over positions keeps the channels
        elif node.target in ("size", "dim") or node.target is getattr:
            of[node] = None  # a shape, not a tensor
        elif node.op in ("call_function", "call_method") and not ins:
            of[node] = None  # arithmetic on shapes and constants
        else:
            raise GraphError(f"{_module_label(gm, node)} changes the channel axis in a way alignment cannot "
                             f"follow (a concatenation, reshape or product of two activations)")
    return _resolve(spec, groups, state)


def _resolve(spec: dict, groups: _Groups, state: dict) -> dict:
    """Group names by their union-find root (FIXED → None); a Linear reading a flattened group of C
    units gets (group, in_features / C)."""
    sizes = {}
    for name, axes in spec.items():
        g = axes[0]
        if g is not None:
            sizes.setdefault(groups.find(g), state[name].shape[0])
    out = {}
    for name, axes in spec.items():
        resolved = []
        for ax, g in enumerate(axes):
            if g is None:
                resolved.append(None)
                continue
            root = groups.find(g)
            if root == FIXED:
                resolved.append(None)
                continue
            n = state[name].shape[ax]
            k = n // sizes[root] if root in sizes and sizes[root] else 1
            if root in sizes and n != sizes[root] * k:
                raise GraphError(f"{name}: axis {ax} has {n} inputs, not a multiple of its group's {sizes[root]} units")
            resolved.append(root if k == 1 else (root, k))
        out[name] = tuple(resolved)
    return out
