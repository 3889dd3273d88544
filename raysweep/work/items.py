"""Work items: typed pieces of a sweep (dataclasses that travel as JSON) and the ONE grammar of
their keys.

A work item is one (pair, α-chunk) of a line sweep (LineItem) or of a curve (CurveItem, t-chunk), one
row-chunk of a plane (PlaneItem), or one replicate's whole trajectory (TrajectoryItem). Its key is
deterministic and names the replicates and the α indices it holds, so its rows are stored once, under
``paths.point_file(<sweep folder>, key)``, and a rerun plans only what is missing. Keys:

    line:        r<a>-s<step>__r<b>-s<step>__a<start>-<stop>   (r<a>-random for I6's random point,
                 r<k>-s<step>-c<child> for an instability child; refined α add __x<level>-<digest>)
    plane / T3:  r<k>-plane__a<start>-<stop>, r<k>-path__a<start>-<stop>
    trajectory:  r<k>-trajectory
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from raysweep.errors import SpecError
from raysweep.spec import Job, SharpnessSpec, SweepSpec, codec

RANDOM_STEP = -1  # step_a of I6's random starting point
RANDOM_SEED_OFFSET = 1_000_000  # random points are drawn with seed + k + this offset


@dataclass(frozen=True)
class Endpoint:
    replicate: int
    step: int  # RANDOM_STEP for a random point; the spawn step for an instability child
    path: str
    sha256: str  # "" while a prepared point (I6's random start) is not drawn yet
    child: int = -1  # instability: which child of the replicate spawned at `step`

    @property
    def tag(self) -> str:
        if self.child >= 0:
            return f"r{self.replicate}-s{self.step}-c{self.child}"
        return f"r{self.replicate}-{'random' if self.step == RANDOM_STEP else f's{self.step}'}"


@dataclass(frozen=True)
class Ref:
    """A file the prepare step writes once and items read (plane directions, a T3 path)."""
    path: str
    sha256: str  # "" while not written yet


@dataclass(frozen=True)
class LineItem:
    sweep: str
    sweep_kind: str
    sweep_hash: str
    key: str
    path: str
    a: Endpoint
    b: Endpoint
    alphas: tuple[float, ...]
    splits: tuple[str, ...]
    bn: str = "interpolate"
    bn_batches: int = 20
    metrics: tuple[str, ...] = ()
    align: str = "none"
    params: tuple[str, ...] = ()  # the tensors interpolated (empty: all); the others held at `hold`'s values
    hold: str = "b"


@dataclass(frozen=True)
class TrajectoryItem:
    sweep: str
    sweep_kind: str
    sweep_hash: str
    key: str
    path: str
    endpoints: tuple[Endpoint, ...]
    examples: int = 1000


@dataclass(frozen=True)
class PlaneItem:
    sweep: str
    sweep_kind: str
    sweep_hash: str
    key: str
    path: str
    replicate: int
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    splits: tuple[str, ...]
    first: bool  # the first chunk of a replicate also stores the projected path
    ends: tuple[Endpoint, Endpoint]  # θ_0, θ_T
    endpoints: tuple[Endpoint, ...]  # the trajectory, where the item needs it
    ref: Ref  # the plane's directions (T4/T5) or the path's projection (T3)


@dataclass(frozen=True)
class SharpnessItem:
    """λ_max and tr(H) at some α of one pair of a line sweep (its `sharpness` table); sweep_hash is the
    sharpness folder's (spec.sharpness_hash)."""
    sweep: str
    sweep_kind: str
    sweep_hash: str
    key: str
    path: str
    a: Endpoint
    b: Endpoint
    alphas: tuple[float, ...]
    at_peak: tuple[bool, ...]  # per α: the curve's barrier peak (found from its stored points)
    split: str
    iterations: int = 20
    probes: int = 10
    examples: int = 1000
    align: str = "none"
    spec: SharpnessSpec = SharpnessSpec()  # the sweep's sharpness settings (top_k, density, along: hessian.py)
    bn_batches: int = 20  # align = "activations": the training batches matched on


@dataclass(frozen=True)
class MergeItem:
    """A merge of the replicates' finals (`members`): a soup, a task-vector merge from `base` over `lambdas`, or
    SLERP between two finals over `lambdas` as t."""
    sweep: str
    sweep_kind: str
    sweep_hash: str
    key: str
    path: str
    members: tuple[Endpoint, ...]
    base: tuple[Endpoint, ...]  # task arithmetic: θ_pre (one endpoint); soups: none
    lambdas: tuple[float, ...]
    splits: tuple[str, ...]  # the first selects the greedy soup's members
    trim: str = "tensor"  # ties: trim each tensor ("tensor", mergekit's) or the whole task vector ("global")


@dataclass(frozen=True)
class CurveItem:
    """t-chunk of a mode-connecting curve between two finals through its trained `bend` (a stored state
    dict); rows as a line's, with t in the alpha column."""
    sweep: str
    sweep_kind: str
    sweep_hash: str
    key: str
    path: str
    a: Endpoint
    b: Endpoint
    bend: Ref
    shape: str  # "bezier" | "polychain"
    alphas: tuple[float, ...]  # the curve's t
    splits: tuple[str, ...]
    bn_batches: int = 20
    metrics: tuple[str, ...] = ()
    align: str = "none"




def to_json(item) -> str:
    """An item as the JSON the actors receive: its class's name under "type", its fields from the type hints
    (spec/codec.py) — any registered item class, a plugin kind's too (work/kinds.py)."""
    return json.dumps({codec.TAG: type(item).__name__, **codec.encode(item)})


def from_json(text: str, types: dict[str, type]):
    """The item `to_json` wrote, rebuilt all the way down (endpoints, refs, specs; lists as tuples), its class
    looked up in `types` (work/kinds.item_types(): the registered item classes)."""
    raw = json.loads(text)
    name = raw.get(codec.TAG) if isinstance(raw, dict) else None
    if name not in types:
        raise ValueError(f"work item: type {name!r} is none of the registered item classes {sorted(types)} (a "
                         f"plugin kind's item: name its module in the job's plugins)")
    return codec.decode(types[name], raw, "work item")


def line_key(a: Endpoint, b: Endpoint, start: int, stop: int) -> str:
    return f"{a.tag}__{b.tag}__a{start:05d}-{stop:05d}"


def sharpness_key(a: Endpoint, b: Endpoint, alphas) -> str:
    import hashlib

    digest = hashlib.sha256(",".join(f"{x:.17g}" for x in alphas).encode()).hexdigest()[:10]
    return f"{a.tag}__{b.tag}__h-{digest}"


def grid_key(k: int, tag: str, start: int, stop: int) -> str:
    return f"r{k}-{tag}__a{start:05d}-{stop:05d}"


def trajectory_key(k: int) -> str:
    return f"r{k}-trajectory"


def line_base(key: str) -> str:
    """A line item's pair part (its key without the α range): the curve it belongs to."""
    return key.rsplit("__a", 1)[0]


_REPLICATE_TAG = re.compile(r"(?:^|__)r(\d+)-")


def key_replicates(key_or_path: str) -> list[int]:
    """The replicates an item (or its stored file) uses, read back from its key."""
    name = key_or_path.rsplit("/", 1)[-1]
    return [int(k) for k in _REPLICATE_TAG.findall(name)]


ITEM_FLOP = 1e13  # automatic chunks: about this much forward work per item (~1 s on a GPU)


def chunk_size(job: Job, sweep: SweepSpec, info) -> int:
    """α per work item: the sweep's `chunk`, or (0) enough α for ~ITEM_FLOP of work, computed from
    the model and the split sizes only, so that every machine plans the same items."""
    from raysweep.models import forward_flops  # torch

    n = len(sweep.alpha.points())
    if sweep.chunk:
        return min(sweep.chunk, n)
    per_alpha = forward_flops(job.model, tuple(info.in_shape), info.num_classes) * sum(
        sweep.split_sizes(info.sizes))
    return max(1, min(n, math.ceil(ITEM_FLOP / max(per_alpha, 1))))


def chunks(alphas: list[float], size: int) -> list[list[float]]:
    return [alphas[i:i + size] for i in range(0, len(alphas), size)]


MAX_ITEMS = 2_000_000  # a plan larger than this would not fit a driver's memory: refused with the number


def check_size(items: list, job: Job, more: int = 0) -> None:
    if len(items) + more > MAX_ITEMS:
        raise SpecError(f"{job.name}'s sweeps make {len(items) + more:,} work items or more, over the "
                        f"{MAX_ITEMS:,} a driver plans at once: use fewer replicates, checkpoints or α points, "
                        f"or larger sweeps.NAME.chunk.")
