"""The sweep kinds: one record each, the one place that says what a kind of sweep is.

A kind's name is part of the job language (``raysweep.spec.sweeps`` lists the names, by family, so
the spec can validate a job without this package); everything else about it is here: where its
points go (a folder with one row schema), which tables read them, how its work items are built,
which evaluator runs them on the actors, how many (θ_a, θ_b) pairs it has, and the papers'
experiment it reproduces. Builders and evaluators are named by import path: this module imports
neither torch nor the modules that use it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.spec import (
    CURVE_KINDS,
    LINE_KINDS,
    MERGE_KINDS,
    PLANE_KINDS,
    SWEEP_KINDS,
    TRAJECTORY_KINDS,
    sharpness_hash,
    sweep_hash,
)


@dataclass(frozen=True)
class Kind:
    name: str
    family: str  # "line" (pairs × α), "trajectory" (one item per replicate), "plane" (a 2-D grid per replicate),
    # "merge" (merged finals), "curve" (pairs × t along a trained bend)
    folder: str  # points/<folder>/: every file there has one schema (raysweep.io.schemas.FOLDER_SCHEMAS)
    table: str  # the table its points feed
    builder: str  # "module:function" that plans its work items (sweep/planner.py)
    evaluator: str  # "module:function"(evaluator, job, item) -> rows, run on the actors (torch)
    pairs: Callable[[int, int, int], int]  # (replicates, checkpoints per replicate, spawn steps) -> pairs
    tag: str  # the papers' experiment (F: Frankle 2020, G: Goodfellow et al. 2015, B: Breuel 2015)

    def build(self) -> Callable:
        return _load(self.builder)

    def evaluate(self) -> Callable:
        return _load(self.evaluator)


def _load(path: str) -> Callable:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


_LINE = dict(family="line", folder="line", table="curves", builder="raysweep.sweep.planner:line_items",
             evaluator="raysweep.evaluate.line:evaluate_item")
_PLANE = dict(family="plane", folder="surface", table="surface", builder="raysweep.sweep.planner:plane_items")
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("init_to_final", **_LINE, pairs=lambda r, c, s: r, tag="I1/I4/I7"),
    Kind("step_to_final", **_LINE, pairs=lambda r, c, s: r * c, tag="I2/I3"),
    Kind("final_to_final", **_LINE, pairs=lambda r, c, s: r * (r - 1) // 2, tag="I5"),
    Kind("random_to_final", **_LINE, pairs=lambda r, c, s: r, tag="I6"),
    Kind("instability", **_LINE, pairs=lambda r, c, s: r * s, tag="LMC"),
    Kind("projection", family="trajectory", folder="trajectory", table="trajectory",
         builder="raysweep.sweep.planner:trajectory_items", evaluator="raysweep.evaluate.trajectory:projection_item",
         pairs=lambda r, c, s: r, tag="T2"),
    Kind("function_map", family="trajectory", folder="function_map", table="function_map",
         builder="raysweep.sweep.planner:trajectory_items", evaluator="raysweep.evaluate.trajectory:function_item",
         pairs=lambda r, c, s: r, tag="T6"),
    Kind("random_plane", **_PLANE, evaluator="raysweep.evaluate.planes:plane_item", pairs=lambda r, c, s: r, tag="T4"),
    Kind("line_and_random", **_PLANE, evaluator="raysweep.evaluate.planes:plane_item", pairs=lambda r, c, s: r,
         tag="T5"),
    Kind("path_surface", **_PLANE, evaluator="raysweep.evaluate.planes:path_surface_item", pairs=lambda r, c, s: r,
         tag="T3"),
    Kind("pca_plane", **_PLANE, evaluator="raysweep.evaluate.planes:plane_item", pairs=lambda r, c, s: r, tag="PCA"),
    Kind("soup", family="merge", folder="merge", table="merges", builder="raysweep.sweep.merges:merge_items",
         evaluator="raysweep.evaluate.merges:soup_item", pairs=lambda r, c, s: 1, tag="soup"),
    Kind("task_arithmetic", family="merge", folder="merge", table="merges", builder="raysweep.sweep.merges:merge_items",
         evaluator="raysweep.evaluate.merges:task_merge_item", pairs=lambda r, c, s: 1, tag="TA"),
    Kind("ties", family="merge", folder="merge", table="merges", builder="raysweep.sweep.merges:merge_items",
         evaluator="raysweep.evaluate.merges:task_merge_item", pairs=lambda r, c, s: 1, tag="TIES"),
    Kind("dare", family="merge", folder="merge", table="merges", builder="raysweep.sweep.merges:merge_items",
         evaluator="raysweep.evaluate.merges:task_merge_item", pairs=lambda r, c, s: 1, tag="DARE"),
    # a line's schema and folder: its rows join the line sweeps' in the curves and barriers tables
    Kind("curve", family="curve", folder="line", table="curves", builder="raysweep.sweep.bends:curve_items",
         evaluator="raysweep.evaluate.bend:curve_item", pairs=lambda r, c, s: r * (r - 1) // 2, tag="MC"),
)}
FAMILIES = {"line": LINE_KINDS, "trajectory": TRAJECTORY_KINDS, "plane": PLANE_KINDS, "merge": MERGE_KINDS,
            "curve": CURVE_KINDS}
assert tuple(KINDS) == SWEEP_KINDS and all(k.name in FAMILIES[k.family] for k in KINDS.values())


SHARPNESS = "raysweep.evaluate.sharpness:sharpness_item"  # a line sweep's sharpness items, in points/sharpness/


def evaluator_of(item):
    """The function that evaluates a work item: its sweep kind's, or the sharpness items' own."""
    return _load(SHARPNESS) if type(item).__name__ == "SharpnessItem" else KINDS[item.sweep_kind].evaluate()


def sharpness_folder(run_dir: str, sweep) -> str:
    return paths.sweep_dir(run_dir, "sharpness", sweep.name, sharpness_hash(sweep))


def kind(name: str) -> Kind:
    """The record of a sweep kind; a failed lookup names every kind."""
    if name not in KINDS:
        raise SpecError(f"unknown sweep kind {name!r}; kinds are {list(KINDS)}")
    return KINDS[name]


def of_table(table: str) -> tuple[str, ...]:
    """The kinds whose points a table is made of (barriers are made of the line kinds' points too)."""
    table = "curves" if table in ("barriers", "points") else table
    return tuple(k.name for k in KINDS.values() if k.table == table)


def sweep_folder(run_dir: str, sweep) -> str:
    """Where a sweep's points are stored: points/<its kind's folder>/<name>-<sweep hash>."""
    return paths.sweep_dir(run_dir, KINDS[sweep.kind].folder, sweep.name, sweep_hash(sweep))
