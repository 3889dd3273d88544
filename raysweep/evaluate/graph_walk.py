"""The walk over a traced graph that gives every tensor its unit group (graph_spec.py's rules, one
method per kind of node), with the union-find of groups it builds."""
from __future__ import annotations

import operator

import torch
from torch import nn

from raysweep.evaluate.graph_axes import (
    FIXED,
    GraphError,
    Groups,
    Segments,
    after_index,
    after_permute,
    after_reduce,
    after_reshape,
    after_transpose,
)

PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Hardswish,
                nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {torch.relu, torch.tanh, torch.sigmoid, nn.functional.relu, nn.functional.gelu, nn.functional.silu,
                  nn.functional.dropout, nn.functional.avg_pool2d, nn.functional.max_pool2d,
                  nn.functional.adaptive_avg_pool2d, nn.functional.leaky_relu, torch.nn.functional.relu6}
PASS_METHODS = {"relu", "relu_", "tanh", "sigmoid", "contiguous", "clone", "float", "to"}
MERGE = {operator.add, operator.iadd, torch.add, operator.sub, torch.sub}
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)


def _module_label(gm, node) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(gm.get_submodule(node.target)).__name__})"
    return f"{node.name} ({getattr(node.target, '__name__', node.target)})"


LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Walk:
    """One pass over the graph: each node's unit group (`group_of`; None: not a tensor alignment follows),
    the axis its units lie on where shapes are known (`unit_axis`), parameters used in forward not yet met
    by a stream (`floating`: node -> (name, ndim)) and attention modules' outputs (`attention`)."""

    def __init__(self, gm, state: dict, shapes: dict):
        self.gm, self.state, self.shapes = gm, state, shapes
        self.groups, self.spec = Groups(), {}
        self.group_of, self.unit_axis, self.floating, self.attention = {}, {}, {}, {}

    def param(self, prefix: str, names, axes) -> None:
        for n in names:
            key = f"{prefix}.{n}" if prefix else n
            if key in self.state:
                self.spec[key] = axes + (None,) * (self.state[key].dim() - len(axes))

    def label(self, node) -> str:
        return _module_label(self.gm, node)

    def ndim(self, node) -> int | None:
        return len(self.shapes[node]) if node in self.shapes else None

    def need_axis(self, node, src, what: str) -> int:
        """The unit axis of `src` (known only with the input's shape)."""
        if src not in self.unit_axis:
            raise GraphError(f"{self.label(node)} {what}; alignment follows it only with the input's shape")
        return self.unit_axis[src]

    def check(self, node, src, want: int, what: str) -> None:
        if (
            self.group_of.get(src) not in (None, FIXED)
            and src in self.unit_axis
            and self.unit_axis[src] != want % self.ndim(src)
        ):
            raise GraphError(f"{self.label(node)} {what} on axis {want % self.ndim(src)}, but the units are on axis "
                             f"{self.unit_axis[src]}")

    def carry(self, node, src, axis: int | None = None) -> None:
        """node's units are src's (on `axis`, or on src's axis counted from the end)."""
        self.group_of[node] = self.group_of.get(src)
        if src in self.floating:
            self.floating[node] = self.floating[src]
        if axis is not None:
            self.unit_axis[node] = axis
        elif src in self.unit_axis and node in self.shapes:
            self.unit_axis[node] = self.ndim(node) - (self.ndim(src) - self.unit_axis[src])

    def join(self, node, tensors: list, what: str) -> None:
        """An addition or concatenation: one group for all of `tensors`; parameters among them take the
        stream's axis (counted from the end, as broadcasting aligns it)."""
        if any(self.group_of.get(a) is None for a in tensors):
            raise GraphError(f"{self.label(node)} {what} a tensor alignment does not follow")
        known = [a for a in tensors if a in self.unit_axis]
        if node in self.shapes and known:
            self.unit_axis[node] = self.ndim(node) - (self.ndim(known[0]) - self.unit_axis[known[0]])
        for a in tensors:
            if a in self.floating:
                if node not in self.unit_axis:
                    raise GraphError(f"{self.label(node)} {what} a parameter used directly in forward; alignment "
                                     f"follows it only with the input's shape")
                name, ndim = self.floating[a]
                axis = ndim - (self.ndim(node) - self.unit_axis[node])
                if axis < 0:
                    raise GraphError(f"{name} is broadcast along the unit axis")
                self.param("", [name], (None,) * axis + (self.group_of[a],))
        g = self.group_of[tensors[0]]
        for a in tensors[1:]:
            g = self.groups.union(g, self.group_of[a])
        self.group_of[node] = g

    def visit(self, node) -> None:
        """Give `node` its unit group: by the node's op for the graph's inputs, outputs, parameters and
        layers, else by the function or method it calls (`call`)."""
        from torch import fx

        found: list = []
        fx.node.map_arg((node.args, node.kwargs), found.append)  # every node it reads, nested lists included
        reads = [a for a in found if self.group_of.get(a) is not None]  # ... those that are followed tensors
        src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if node.op == "placeholder":  # the input: its layout is fixed
            self.group_of[node] = FIXED
        elif node.op == "output":  # the outputs: whatever reaches them is not permuted
            for a in reads:
                self.groups.union(self.group_of[a], FIXED)
        elif node.op == "get_attr":
            self.parameter(node)
        elif node.op == "call_module":
            self.module(node, self.gm.get_submodule(node.target), src)
        else:
            self.call(node, src, reads)

    def parameter(self, node) -> None:
        """A parameter used directly in forward (a class token, a position embedding): a group of its own until
        it meets a stream (`join`), which gives it that stream's group."""
        if node.target not in self.state or not self.shapes:
            raise GraphError(f"{node.target}: a tensor used directly in forward (not through a layer); alignment "
                             f"follows it only when it is a parameter and the input's shape is known")
        self.group_of[node] = self.groups.new(node.target)
        self.floating[node] = (node.target, self.state[node.target].dim())

    def call(self, node, src, reads: list) -> None:
        """A function or method call. The order of the tests matters: streams are joined (additions,
        concatenation) and an attention's output taken before anything else; element-wise functions keep
        their input's units; shape queries are no tensors; then whatever is computed from the input alone
        keeps the input's fixed layout — tested before the shape operations, which would otherwise refuse
        the input's own reshapes (a ViT's patches); then flatten, reductions and reshapes of a followed
        tensor; arithmetic on shapes and constants; anything else is refused, naming the node."""
        target, op = node.target, node.op
        if op == "call_function" and target in MERGE:
            self.join(node, [a for a in node.args if isinstance(a, type(node))], "adds")
        elif target is torch.cat:
            self.cat(node)
        elif target is operator.getitem and src is not None and (src in self.attention or self.group_of.get(src)):
            self.getitem(node, src)
        elif target in PASS_FUNCTIONS or target in PASS_METHODS:
            self.carry(node, src)
        elif target in ("size", "dim") or target is getattr:
            self.group_of[node] = None  # a shape, not a tensor
        elif src is not None and self.group_of.get(src) == FIXED and reads:
            self.group_of[node] = FIXED  # the input's own layout: nothing there is permuted
        elif target in (torch.flatten, "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            self.flatten(node, src, start)
        elif target in ("mean", torch.mean, "sum", torch.sum):
            self.reduce(node, src)
        elif target in ("reshape", "view", torch.reshape, "permute", torch.permute, "transpose", torch.transpose,
                        "expand") and self.group_of.get(src) is not None:
            self.shape_op(node, src)
        elif not reads:
            self.group_of[node] = None  # arithmetic on shapes and constants
        else:
            raise GraphError(f"{self.label(node)} changes the channel axis in a way alignment cannot "
                             f"follow (a concatenation, reshape or product of two activations)")

    def module(self, node, m, src) -> None:
        src_group = self.group_of.get(src)
        if isinstance(m, LINEAR) and getattr(m, "groups", 1) == 1:
            linear = isinstance(m, nn.Linear)
            self.check(node, src, -1 if linear else 1, "reads its inputs")
            out = self.groups.new(node.target)
            self.param(node.target, ["weight"], (out, src_group if src_group is not None else FIXED))
            self.param(node.target, ["bias"], (out,))
            self.group_of[node] = out
            if node in self.shapes:
                self.unit_axis[node] = self.ndim(node) - 1 if linear else 1
        elif isinstance(m, NORMS):
            if src_group is None:
                raise GraphError(f"{self.label(node)} normalizes a tensor alignment does not follow")
            if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) != 1:
                raise GraphError(f"{self.label(node)} normalizes over {len(m.normalized_shape)} axes")
            self.check(node, src, -1 if isinstance(m, nn.LayerNorm) else 1, "normalizes")
            self.param(node.target, ["weight", "bias", "running_mean", "running_var"], (src_group,))
            self.carry(node, src)
        elif isinstance(m, nn.MultiheadAttention):
            self.attend(node, m)
        elif isinstance(m, nn.Flatten):
            self.flatten(node, src, m.start_dim)
        elif isinstance(m, PASS_MODULES) or (isinstance(m, nn.Sequential) and not len(m)):
            self.carry(node, src)
        else:
            raise GraphError(f"{self.label(node)} is not a layer alignment knows how to permute through (Linear, "
                             f"Conv, BatchNorm, LayerNorm, attention, activations, pooling, residual additions)")

    def attend(self, node, m) -> None:
        """Multi-head attention: two groups of H·head_dim rows, q/k (q·k sums over them) and v (with the
        out-projection's columns), whose heads move alike (align.py solves them together); one input stream."""
        qkv = [node.args[i] if len(node.args) > i else node.kwargs.get(k)
               for i, k in enumerate(("query", "key", "value"))]
        if not m._qkv_same_embed_dim or m.bias_k is not None or m.in_proj_weight is None:
            raise GraphError(f"{self.label(node)}: separate q/k/v projections or bias_k/bias_v are not permuted")
        self.join(node, qkv, "attends over")
        for a in qkv:
            self.check(node, a, -1, "reads its inputs")
        qk, v, out = (self.groups.new(f"{node.target}.{k}") for k in ("qk", "v", "out"))
        rows = Segments((qk, qk, v), heads=m.num_heads)
        self.param(node.target, ["in_proj_weight"], (rows, self.group_of[node]))
        self.param(node.target, ["in_proj_bias"], (rows,))
        self.param(f"{node.target}.out_proj", ["weight"], (out, v))
        self.param(f"{node.target}.out_proj", ["bias"], (out,))
        self.group_of[node], self.attention[node] = None, out

    def getitem(self, node, src) -> None:
        index = node.args[1]
        if src in self.attention:  # (output, attention weights): the weights are not followed
            self.group_of[node] = self.attention[src] if index == 0 else None
            if index == 0 and node in self.shapes:
                self.unit_axis[node] = self.ndim(node) - 1
            return
        axis = self.need_axis(node, src, "indexes a tensor")
        try:
            self.carry(node, src, after_index(index, self.ndim(src), axis))
        except GraphError as exc:
            raise GraphError(f"{self.label(node)} {exc}") from None

    def cat(self, node) -> None:
        tensors = node.args[0] if node.args else node.kwargs["tensors"]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        self.join(node, list(tensors), "concatenates")
        if node not in self.unit_axis:
            raise GraphError(f"{self.label(node)} is a concatenation; alignment follows one only with the input's "
                             f"shape, along an axis other than the units'")
        if dim % self.ndim(node) == self.unit_axis[node]:
            raise GraphError(f"{self.label(node)} is a concatenation of units (along their axis)")

    def flatten(self, node, src, start: int) -> None:
        if src in self.unit_axis:
            if start % self.ndim(src) != self.unit_axis[src]:
                raise GraphError(f"{self.label(node)}: a flatten from dimension {start} mixes the unit axis "
                                 f"{self.unit_axis[src]} with others")
            self.carry(node, src, self.unit_axis[src])  # C channels × k positions: each unit's k inputs together
        elif start != 1:
            raise GraphError(f"{self.label(node)}: a flatten from dimension {start} mixes the batch or channel axis")
        else:
            self.carry(node, src)

    def reduce(self, node, src) -> None:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if dims is None or (src not in self.unit_axis and 1 in (dims if isinstance(dims, (tuple, list)) else (dims,))):
            raise GraphError(f"{self.label(node)}: a mean over axis 1, the channel axis of an image (other layouts "
                             f"are followed only with the input's shape)")
        if src not in self.unit_axis:
            self.carry(node, src)  # a mean over positions keeps the channels
            return
        try:
            self.carry(node, src, after_reduce(dims, keep, self.ndim(src), self.unit_axis[src]))
        except GraphError as exc:
            raise GraphError(f"{self.label(node)} {exc}") from None

    def shape_op(self, node, src) -> None:
        target, axis = node.target, self.unit_axis.get(src)
        if target == "expand":
            self.carry(node, src)
            return
        if axis is None:
            raise GraphError(f"{self.label(node)} changes the channel axis in a way alignment cannot follow "
                             f"(a reshape or permute, followed only with the input's shape)")
        nd, rest = self.ndim(src), [a for a in node.args[1:]]
        try:
            if target in ("reshape", "view", torch.reshape):
                new = after_reshape(self.shapes[src], self.shapes[node], axis)
            elif target in ("permute", torch.permute):
                new = after_permute(
                    rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest, nd, axis
                )
            else:
                new = after_transpose(rest[0], rest[1], nd, axis)
        except GraphError as exc:
            raise GraphError(f"{self.label(node)} {exc}") from None
        self.carry(node, src, new)
