"""The typed job spec: dataclasses (model), TOML parsing (parse), ``--set`` overrides (overrides) and
content hashes (hashing)."""
from raysweep.spec.hashing import sweep_hash
from raysweep.spec.model import (BN_MODES, LINE_KINDS, MAX_ALPHAS, PLANE_KINDS, SCHEDULES, SPLITS, SWEEP_KINDS,
                                 TRAJECTORY_KINDS, AlphaGrid, DataSpec, EvalSpec, Job, ModelSpec, ResourcesSpec,
                                 SpecError, SweepSpec, TrainSpec)
from raysweep.spec.overrides import apply_overrides, parse_value
from raysweep.spec.parse import parse_job

__all__ = ["BN_MODES", "LINE_KINDS", "MAX_ALPHAS", "PLANE_KINDS", "SCHEDULES", "SPLITS", "SWEEP_KINDS",
           "TRAJECTORY_KINDS", "AlphaGrid", "DataSpec", "EvalSpec", "Job", "ModelSpec", "ResourcesSpec", "SpecError",
           "SweepSpec", "TrainSpec", "apply_overrides", "parse_job", "parse_value", "sweep_hash"]
