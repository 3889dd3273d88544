"""Where a tensor's unit (channel, feature) axis goes through shape operations — indexing, reshapes,
permutes, reductions — given the shapes torch.fx's ShapeProp recorded. Each function returns the axis
in the result, or raises GraphError when the operation splits, mixes or selects units (then no
permutation of units commutes with it). And the groups themselves: a union-find over their names, and
the typed record of an axis cut into segments (attention's q, k and v rows)."""
from __future__ import annotations

import math
from dataclasses import dataclass

FIXED = "fixed"  # the group of the input's and the outputs' axes: never permuted


class GraphError(ValueError):
    """A graph whose channels cannot be followed (the message names the node and the module)."""


def after_index(index, ndim: int, axis: int) -> int:
    """x[index]: ints drop an axis, None adds one, slices keep theirs; the unit axis may only be kept whole."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is Ellipsis for i in items):
        at = items.index(Ellipsis)
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        items[at:at + 1] = [slice(None)] * (ndim - used)
    out, src = 0, 0
    for i in items:
        if i is None:  # a new axis of size 1
            out += 1
            continue
        if src == axis:
            if not (isinstance(i, slice) and i == slice(None)):
                raise GraphError("selects some units of the unit axis (an index or a partial slice)")
            return out
        if isinstance(i, slice):
            out += 1
        elif not isinstance(i, int):
            raise GraphError("indexes with a tensor")
        src += 1
    return out + (axis - src)  # the axes after the index are kept


def after_reshape(shape_in, shape_out, axis: int) -> int:
    """A reshape that keeps the unit axis whole (the product of the axes before it unchanged), or merges it
    with all the axes after it into the last one (a flatten: each unit's inputs stay together)."""
    before = math.prod(shape_in[:axis])
    acc = 1
    for j, size in enumerate(shape_out):
        if acc == before:
            if size == shape_in[axis]:
                return j
            if j == len(shape_out) - 1 and size == math.prod(shape_in[axis:]):
                return j
            break
        acc *= size
    raise GraphError(f"reshapes {tuple(shape_in)} to {tuple(shape_out)}, splitting or mixing the unit axis {axis}")


def after_permute(dims, ndim: int, axis: int) -> int:
    dims = [d % ndim for d in dims]
    return dims.index(axis)


def after_transpose(a: int, b: int, ndim: int, axis: int) -> int:
    a, b = a % ndim, b % ndim
    return b if axis == a else a if axis == b else axis


def after_reduce(dims, keepdim: bool, ndim: int, axis: int) -> int:
    """A mean (or sum) over `dims`, which must not include the unit axis."""
    dims = {d % ndim for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}
    if axis in dims:
        raise GraphError("reduces over the unit axis")
    return axis if keepdim else axis - sum(1 for d in dims if d < axis)


class Groups:
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


@dataclass(frozen=True)
class Segments:
    """An axis of equal segments, each permuted by its own group: attention's q, k and v rows. `heads`: the
    attention's number of heads, whose q/k rows (groups[0]) and v rows (groups[-1]) move alike as units."""
    groups: tuple[str, ...]
    heads: int = 0
