"""Content hashes. A run is named by the hash of the non-default fields that change its trained
weights (fields marked NOT_WEIGHTS are left out); each sweep by the hash of what changes its numbers.
Adding a field with a default keeps old hashes valid; a change to how built-in models or datasets
make their weights bumps RECIPE instead, so runs made before it are not mistaken for new ones."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING

from raysweep.errors import SpecError
from raysweep.spec.names import is_import_path

if TYPE_CHECKING:
    from raysweep.spec.job import Job
    from raysweep.spec.sweeps import SweepSpec

NOT_WEIGHTS = {"weights": False}  # field metadata: this field does not change trained weights (not hashed)

# 2: built-in models keep PyTorch's default biases (OpenLTH), CIFAR-10 uses ImageNet's mean/std
RECIPE = 2
STREAM = 2  # the order a packed dataset streams in (data/streams.py), for runs with data.source = "store"


def job_hash(job: Job) -> str:
    """The run's name: non-default weight fields, plus the digests of user code named by import path
    (changed code is a new run) and of external checkpoints, as `job.digests` carries them."""
    digests = dict(job.digests)
    payload = {"seed": job.seed} if job.seed else {}
    for key in ("data", "model", "train"):
        payload.update({f"{key}.{k}": v for k, v in _non_default(getattr(job, key), weights_only=True).items()})
        name = getattr(job, key).name if key != "train" else ""
        if is_import_path(name) or f"{key}.source" in digests:  # user code: by path, or registered by a plugin
            payload[f"{key}.source"] = _digest_of(job, digests, f"{key}.source")
    if not (is_import_path(job.model.name) and is_import_path(job.data.name)):
        payload["recipe"] = RECIPE  # a built-in model or dataset made these weights
    if "model.config" in payload and "from" in json.loads(payload["model.config"]):  # a config.json: by content
        config = json.loads(payload["model.config"])
        config["from"] = _digest_of(job, digests, "model.config.from")
        payload["model.config"] = json.dumps(config, sort_keys=True)
    if "data.tokenizer" in payload:  # a tokenizer file: by content, wherever it lies
        payload["data.tokenizer"] = _digest_of(job, digests, "data.tokenizer")
    if job.train.init_from:  # fine-tuning: the pretrained weights' content, not only their path
        payload["train.init_from.sha256"] = _digest_of(job, digests, "init_from")
    if job.data.source == "store":  # 2: the epoch's order is a window shuffle over row groups (was: groups, then rows)
        payload["stream"] = STREAM
    if job.resources.workers > 1:  # data-parallel: per-rank BatchNorm statistics, another sum order
        payload["world"] = job.resources.workers
    if job.external:
        payload = {"external": _digest_of(job, digests, "external"), "model": payload.get("model.name", "mlp"),
                   **{k: v for k, v in payload.items() if k.startswith(("model.", "data."))}}
    return _digest(payload)


def _digest_of(job: Job, digests: dict, key: str) -> str:
    if key not in digests:
        raise SpecError(f"job {job.name!r} names {key.split('.')[0]} outside itself ({key}) whose digest was not "
                        f"computed: load jobs with raysweep.jobs.load_job, or pass the Job through "
                        f"raysweep.validate.complete(job) first.")
    return digests[key]


def sweep_hash(sweep: SweepSpec) -> str:
    """Hash of everything that changes a sweep's numbers (not its name, not its chunking)."""
    payload = {k: v for k, v in _non_default(sweep).items() if not k.startswith("sharpness.")}  # items of their own
    for key in ("name", "chunk"):
        payload.pop(key, None)
    payload["kind"] = sweep.kind
    return _digest(payload)


def sharpness_hash(sweep: SweepSpec) -> str:
    """The sweep's line (its hash) and the sharpness settings: the sharpness items' folder."""
    return _digest({"line": sweep_hash(sweep), **{k: v for k, v in _non_default(sweep).items()
                                                   if k.startswith("sharpness.")}})


def bend_hash(sweep: SweepSpec) -> str:
    """What changes a curve sweep's trained bends: the curve's shape and training, and the alignment of
    θ_b (not the t grid, the splits or BN: re-evaluating a curve never retrains it)."""
    return _digest({"shape": sweep.curve.shape, "align": sweep.align,
                    **{k: v for k, v in _non_default(sweep).items() if k.startswith("curve.")}})


def _digest(payload: dict) -> str:
    return hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def _non_default(obj, defaults=None, weights_only: bool = False) -> dict:
    """Fields that differ from their defaults; a nested table is compared with the field's own
    default value (so a new field whose default is a table keeps old hashes). With `weights_only`,
    fields marked NOT_WEIGHTS (where data lives, what is logged) are left out."""
    out = {}
    for f in dataclasses.fields(obj):
        if weights_only and f.metadata.get("weights") is False:
            continue
        value = getattr(obj, f.name)
        default = getattr(defaults, f.name) if defaults is not None else _default_of(f)
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in _non_default(value, default, weights_only).items()})
        elif value != default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
