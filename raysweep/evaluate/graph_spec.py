"""Permutation groups read from a model's graph (torch.fx), for any network built from standard layers.

Every tensor in the traced forward pass carries the group of its unit axis (graph_walk.py). A Linear or
Conv layer starts a new group on its outputs (its weight's axis 0), reading its input's group on axis 1;
BatchNorm and LayerNorm, activations, dropout, pooling and spatial means pass their input's group on;
an addition (a residual connection) makes its two inputs' groups one, as a skip connection needs the
same permutation on both sides; a flatten of C channels × k positions hands the group on expanded k
times (a unit's k inputs move together). Multi-head attention permutes its heads as units (a head's
q, k and v rows of the input projection and the out-projection's columns reading it move together)
and the dimensions inside each head (q and k rows together; v rows with the out-projection's
columns); query, key and value read one stream. Given the input's shape, the unit axis is followed through
reshapes, permutes, indexing (a ViT's class token) and concatenation along other axes, and parameters
used directly in forward (class token, position embedding) join the stream they are added to. The
network's input and output are fixed (the union-find's FIXED), so every group joined to them is not
permuted. Whatever else the graph does to the unit axis (a concatenation of channels, a reshape that
splits them, a product of two activations, a custom module with weights) stops the derivation with an
error naming the node and its module. Torchvision's ResNets and ViTs, VGG and MLPs are covered; the
derived groups equal the hand-written specs of `align.py` where those exist.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from raysweep.evaluate.graph_axes import FIXED, GraphError, Groups, Segments
from raysweep.evaluate.graph_walk import Walk

__all__ = ["GraphError", "derive_spec", "derive_walk"]


def _trace(model: nn.Module):
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
        return fx.GraphModule(model, tracer.trace(model))
    except Exception as exc:  # data-dependent control flow, iteration over a tensor, unsupported Python
        where = tracer.stack[-1] if tracer.stack else type(model).__name__
        raise GraphError(f"{where} cannot be traced by torch.fx ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None


def _shapes(gm, model: nn.Module, in_shape) -> dict:
    """node -> the shape of its output, from one forward of two zero examples of `in_shape` (or of the
    model's own `image_size`, as torchvision's ViTs have); {} when the input's shape is not known."""
    from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

    size = getattr(model, "image_size", None)
    in_shape = in_shape or ((3, size, size) if isinstance(size, int) else None)
    if in_shape is None:
        return {}
    ref = next(iter(model.parameters()), None)
    x = torch.zeros(2, *in_shape, device=ref.device if ref is not None else "cpu",
                    dtype=ref.dtype if ref is not None and ref.is_floating_point() else torch.float32)
    was = model.training
    model.eval()  # no BatchNorm statistics move
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as exc:  # the graph is still followed where it needs no shapes
        logging.getLogger("raysweep").warning(
            "alignment: %s does not run on an input of shape %s (%s: %s); its unit axes are followed without shapes",
            type(model).__name__,
            tuple(in_shape),
            type(exc).__name__,
            str(exc).splitlines()[0][:120] if str(exc) else "",
        )
        return {}
    finally:
        model.train(was)
    return {n: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
            if isinstance(n.meta.get("tensor_meta"), TensorMetadata)}


def derive_spec(model: nn.Module, in_shape: tuple[int, ...] | None = None) -> dict[str, tuple]:
    """{state-dict tensor: per-axis group} for `model`; an axis entry is None (not permuted), a group
    name, (group, k) for an axis of C·k inputs that a flatten made of a C-unit group, or Segments (equal
    parts of the axis, each with its group: attention's q, k and v rows). With the input's shape (`in_shape`, without
    the batch) the unit axis is followed through reshapes, permutes, indexing and concatenation, and
    parameters used directly in forward (a ViT's class token and position embedding) join their stream."""
    _, walk = derive_walk(model, in_shape)
    return _resolve(walk.spec, walk.groups, walk.state)


def derive_walk(model: nn.Module, in_shape: tuple[int, ...] | None = None):
    """(the traced GraphModule, the Walk over it): every node's unit group (`walk.group_of`, named by
    `walk.groups.find`) and unit axis — what activation matching records activations by."""
    gm = _trace(model)
    walk = Walk(gm, model.state_dict(), _shapes(gm, model, in_shape))
    for node in gm.graph.nodes:
        walk.visit(node)
    return gm, walk


def _resolve(spec: dict, groups: Groups, state: dict) -> dict:
    """Group names by their union-find root (FIXED → None); an axis of a group of C units with C·k entries
    (a Linear reading a flattened group) gets (group, k); segments keep their groups' roots."""
    sizes = {}
    for name, axes in spec.items():
        for ax, g in enumerate(axes):
            if isinstance(g, Segments):
                for part in g.groups:
                    sizes.setdefault(groups.find(part), state[name].shape[ax] // len(g.groups))
    for name, axes in spec.items():
        g = axes[0]
        if isinstance(g, str):
            sizes.setdefault(groups.find(g), state[name].shape[0])
    out = {}
    for name, axes in spec.items():
        resolved = []
        for ax, g in enumerate(axes):
            if isinstance(g, Segments):
                resolved.append(Segments(tuple(groups.find(part) for part in g.groups), g.heads))
                continue
            root = groups.find(g) if g is not None else FIXED
            if root == FIXED:
                resolved.append(None)
                continue
            n = state[name].shape[ax]
            k = n // sizes[root] if sizes.get(root) else 1
            if root in sizes and n != sizes[root] * k:
                raise GraphError(f"{name}: axis {ax} has {n} inputs, not a multiple of its group's {sizes[root]} units")
            resolved.append(root if k == 1 else (root, k))
        out[name] = tuple(resolved)
    return out
