"""Work items: the typed pieces of a sweep and the ONE grammar of their keys.

A work item is one (pair, α-chunk) of a line sweep, one row-chunk of a plane, or one replicate's
whole trajectory. Its key is deterministic and names the replicates and the α indices it holds, so
its rows are stored once, under ``paths.point_file(..., key)``, and a rerun plans only what is
missing. Keys:

    line:        r<a>-s<step>__r<b>-s<step>__a<start>-<stop>   (r<a>-random for I6's random point,
                 r<k>-s<step>-c<child> for an instability child)
    plane / T3:  r<k>-plane__a<start>-<stop>, r<k>-path__a<start>-<stop>
    trajectory:  r<k>-trajectory
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from raysweep.spec import Job, SweepSpec

RANDOM_STEP = -1  # step_a of I6's random starting point
RANDOM_SEED_OFFSET = 1_000_000  # random points are drawn with seed + k + this offset


class NotTrainedError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    replicate: int
    step: int  # RANDOM_STEP for a random point; the spawn step for an instability child
    path: str
    sha256: str
    child: int = -1  # instability: which child of the replicate spawned at `step`

    @property
    def tag(self) -> str:
        if self.child >= 0:
            return f"r{self.replicate}-s{self.step}-c{self.child}"
        return f"r{self.replicate}-{'random' if self.step == RANDOM_STEP else f's{self.step}'}"

def line_key(a: Endpoint, b: Endpoint, start: int, stop: int) -> str:
    return f"{a.tag}__{b.tag}__a{start:05d}-{stop:05d}"


def grid_key(k: int, tag: str, start: int, stop: int) -> str:
    return f"r{k}-{tag}__a{start:05d}-{stop:05d}"


def trajectory_key(k: int) -> str:
    return f"r{k}-trajectory"


_REPLICATE_TAG = re.compile(r"(?:^|__)r(\d+)-")


def key_replicates(key_or_path: str) -> list[int]:
    """The replicates an item (or its stored file) uses, read back from its key."""
    name = key_or_path.rsplit("/", 1)[-1]
    return [int(k) for k in _REPLICATE_TAG.findall(name)]


def pair_count(kind: str, replicates: int, checkpoints: int, spawn_steps: int = 0) -> int:
    """How many (θ_a, θ_b) pairs a sweep kind has, without reading any manifest."""
    return {"instability": replicates * spawn_steps, "init_to_final": replicates, "step_to_final": replicates * checkpoints,
            "final_to_final": replicates * (replicates - 1) // 2, "random_to_final": replicates,
            "projection": replicates, "function_map": replicates,
            "random_plane": replicates, "line_and_random": replicates, "path_surface": replicates}[kind]


ITEM_FLOP = 1e13  # automatic chunks: about this much forward work per item (~1 s on a GPU)


def chunk_size(job: Job, sweep: SweepSpec, info) -> int:
    """α per work item: the sweep's `chunk`, or (0) enough α for ~ITEM_FLOP of work, computed from
    the model and the split sizes only, so that every machine plans the same items."""
    from raysweep.models import forward_flops

    n = len(sweep.alpha.points())
    if sweep.chunk:
        return min(sweep.chunk, n)
    per_alpha = forward_flops(job.model, tuple(info.in_shape), info.num_classes) * sum(
        info.sizes[s] for s in sweep.splits)
    return max(1, min(n, math.ceil(ITEM_FLOP / max(per_alpha, 1))))


def chunks(alphas: list[float], size: int) -> list[list[float]]:
    return [alphas[i:i + size] for i in range(0, len(alphas), size)]


MAX_ITEMS = 2_000_000  # a plan larger than this would not fit a driver's memory: refused with the number


def _check_size(items: list, job: Job, more: int = 0) -> None:
    if len(items) + more > MAX_ITEMS:
        from raysweep.spec import SpecError

        raise SpecError(f"{job.name}'s sweeps make {len(items) + more:,} work items or more, over the "
                        f"{MAX_ITEMS:,} a driver plans at once: use fewer replicates, checkpoints or α points, "
                        f"or larger sweeps.NAME.chunk.")
