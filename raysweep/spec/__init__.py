"""The typed job spec, the base layer (it imports only ``raysweep.errors``): the job's dataclasses
(job), data/model/train/eval/resources sections (runtime), sweeps and their kind names (sweeps), TOML
parsing (parse), ``--set`` overrides (overrides), names (names), content hashes (hashing) and typed
JSON (codec: trees of dataclasses to JSON and back, from their type hints). Checks that need user code,
models or losses are ``raysweep.validate``'s."""
from raysweep.errors import SpecError
from raysweep.spec.hashing import NOT_WEIGHTS, bend_hash, job_hash, sharpness_hash, sweep_hash
from raysweep.spec.job import (
                               BUILTIN_DATASETS,
                               BUILTIN_MODELS,
                               BUILTIN_TASKS,
                               DataSpec,
                               EvalSpec,
                               Job,
                               ModelSpec,
                               ResourcesSpec,
                               TrainSpec,
                               task_split,
)
from raysweep.spec.names import is_import_path, metric_name
from raysweep.spec.overrides import apply_overrides, parse_value
from raysweep.spec.parse import parse_job, parse_stored
from raysweep.spec.sweeps import (
                               BN_MODES,
                               CURVE_KINDS,
                               CURVE_SHAPES,
                               LINE_KINDS,
                               MAX_ALPHAS,
                               MERGE_KINDS,
                               PLANE_KINDS,
                               POINT_KINDS,
                               SPLITS,
                               SWEEP_KINDS,
                               TRAIN_SUBSET,
                               TRAJECTORY_KINDS,
                               AlphaGrid,
                               CurveSpec,
                               SharpnessSpec,
                               SweepSpec,
)

__all__ = [
    "MERGE_KINDS",
    "BN_MODES",
    "CURVE_KINDS",
    "CURVE_SHAPES",
    "CurveSpec",
    "SharpnessSpec",
    "POINT_KINDS",
    "bend_hash",
    "BUILTIN_DATASETS",
    "BUILTIN_MODELS",
    "BUILTIN_TASKS",
    "LINE_KINDS",
    "MAX_ALPHAS",
    "NOT_WEIGHTS",
    "PLANE_KINDS",
    "SPLITS",
    "TRAIN_SUBSET",
    "SWEEP_KINDS",
    "TRAJECTORY_KINDS",
    "AlphaGrid",
    "DataSpec",
    "EvalSpec",
    "Job",
    "ModelSpec",
    "ResourcesSpec",
    "SpecError",
    "SweepSpec",
    "TrainSpec",
    "apply_overrides",
    "is_import_path",
    "task_split",
    "job_hash",
    "metric_name",
    "sharpness_hash",
    "parse_job",
    "parse_stored",
    "parse_value",
    "sweep_hash",
]
