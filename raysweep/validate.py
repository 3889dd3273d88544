"""Checks of a job that need more than its data: the user's code imports and fits its contract,
losses and metrics resolve, the user's builder returns a module; and the digests of what the job
names outside itself (user code, external checkpoints), which its run hash covers.

The spec (``raysweep.spec``) checks a job as data; this layer sits above it, the models and the
plugins, so the spec never imports user code. ``raysweep.jobs.load_job`` runs both.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from raysweep.errors import SpecError
from raysweep.io.external import external_digest, file_sha
from raysweep.io.paths import HF_CONFIG, HF_TOKENIZER
from raysweep.plugins import check_call, load_object, load_plugins, source_identity
from raysweep.spec import (
    BUILTIN_DATASETS,
    BUILTIN_MODELS,
    BUILTIN_TASKS,
    POINT_KINDS,
    Job,
    is_import_path,
    task_split,
)
from raysweep.spec.job import HARNESS
from raysweep.train.frozen import frozen
from raysweep.work.kinds import kind


def problems(job: Job) -> list[str]:
    """What is wrong with the job's code: each import path imports and accepts its contract's
    arguments; each loss and metric name resolves."""
    out = []
    for key, spec, builtin, args in (("data.name", job.data, BUILTIN_DATASETS, ("<root>",)),
                                     ("model.name", job.model, BUILTIN_MODELS, ((1, 8, 8), 10))):
        if spec.name not in builtin and is_import_path(spec.name):
            try:
                check_call(load_object(spec.name, key), spec.name, key, args, spec.options())
            except SpecError as exc:
                out.append(str(exc))
    if job.train.loss != "auto":
        out += _resolves("train.loss", (job.train.loss,), "loss")
    try:
        load_plugins(job.plugins)  # each registers its kinds (and models, datasets, ...) as it is imported
    except SpecError as exc:
        return out + [str(exc)]
    out += _registered(job)
    for s in job.sweeps:
        if s.kind in POINT_KINDS:
            out += _resolves(f"sweeps.{s.name}.metrics", s.metrics, "metric")
        try:
            k = kind(s.kind)
        except SpecError as exc:
            out.append(f"sweeps.{s.name}: {exc}")
            continue
        out += k.check(s, f"sweeps.{s.name}") if k.check else []
    return out


def _registered(job: Job) -> list[str]:
    """A model or dataset named by a plain name that is no built-in: a plugin must have registered it."""
    if not job.plugins:
        return []
    out = []
    if job.model.name not in BUILTIN_MODELS and not is_import_path(job.model.name):
        from raysweep.models import MODELS  # torch

        out += [] if job.model.name in MODELS else [f"model.name = {job.model.name!r} is no registered model; "
                                                    f"they are {sorted(MODELS)} (after the plugins "
                                                    f"{list(job.plugins)})"]
    if job.data.name not in BUILTIN_DATASETS and not is_import_path(job.data.name) and job.data.source == "files":
        from raysweep.data.registry import DATASETS  # torch

        out += [] if job.data.name in DATASETS else [f"data.name = {job.data.name!r} is no registered dataset; "
                                                     f"they are {sorted(DATASETS)} (after the plugins "
                                                     f"{list(job.plugins)})"]
    return out


def _resolves(key: str, names, kind: str) -> list[str]:
    """Per-example losses and metrics: built-in names or import paths that load (evaluate/losses.py)."""
    if not names:
        return []
    from raysweep.evaluate.losses import LOSSES, METRICS, resolve  # torch

    out = []
    for name in names:
        try:
            resolve(name, LOSSES if kind == "loss" else METRICS, key)
        except SpecError as exc:
            out.append(str(exc))
    return out


def complete(job: Job) -> Job:
    """The job with the digests of the code and files it names (`Job.digests`, in its run hash)."""
    digests = {}
    for key in ("data", "model"):
        name = getattr(job, key).name
        if is_import_path(name):
            digests[f"{key}.source"] = source_identity(name)
        elif job.plugins and name not in (BUILTIN_MODELS if key == "model" else BUILTIN_DATASETS):
            digests[f"{key}.source"] = _plugin_source(key, name)
    if job.external:
        digests["external"] = external_digest(job.external)
    job = _kind_code(job)
    job, files = _local_files(job)
    digests.update(files)
    if job.train.init_from:
        if "://" not in job.train.init_from:  # workers open it from their own folders: an absolute path
            path = str(Path(job.train.init_from).expanduser().resolve())
            job = dataclasses.replace(job, train=dataclasses.replace(job.train, init_from=path))
        digests["init_from"] = file_sha(job.train.init_from)
    return dataclasses.replace(job, digests=tuple(sorted(digests.items())))


def _local_files(job: Job) -> tuple[Job, dict]:
    """A language model's files named by path — model.config's `from` (a config.json or the folder holding one)
    and data.tokenizer — made absolute (workers open them from their own folders), with the sha256 of their
    content for the run's hash: the same files anywhere are the same run."""
    digests = {}
    config = json.loads(job.model.config or "{}")
    if isinstance(config.get("from"), str) and config["from"]:
        path = Path(config["from"]).expanduser().resolve()
        file = path / HF_CONFIG if path.is_dir() else path
        if not file.is_file():
            raise SpecError(f"model.config.from = {config['from']!r}: there is no {HF_CONFIG} there; give a Hugging "
                            f"Face model folder or its config.json")
        config["from"] = str(path)
        job = dataclasses.replace(job, model=dataclasses.replace(job.model, config=json.dumps(config, sort_keys=True)))
        digests["model.config.from"] = file_sha(str(file))
    if job.data.tokenizer:
        path = Path(job.data.tokenizer).expanduser().resolve()
        file = path / HF_TOKENIZER if path.is_dir() else path
        if not file.is_file():
            raise SpecError(f"data.tokenizer = {job.data.tokenizer!r}: there is no tokenizer file there; give a "
                            f"{HF_TOKENIZER} or the folder holding one (a Hugging Face model's)")
        job = dataclasses.replace(job, data=dataclasses.replace(job.data, tokenizer=str(path)))
        digests["data.tokenizer"] = file_sha(str(file))
    return _task_contents(job), digests


def _task_contents(job: Job) -> Job:
    """data.tasks' files made absolute, and each sweep that names a task's split given that task's content (its
    sha256, a built-in's version): a changed task file is a new sweep, the trained weights are kept."""
    if not job.data.tasks:
        return job
    plain = lambda t: t in BUILTIN_TASKS or t.startswith(HARNESS)  # noqa: E731  (no file of its own)
    files = tuple(t if plain(t) else str(Path(t).expanduser().resolve()) for t in job.data.tasks)
    missing = [t for t in files if not plain(t) and not Path(t).is_file()]
    if missing:
        raise SpecError(f"data.tasks: {missing[0]!r} is not a file; give a .jsonl file of {{\"context\", "
                        f"\"choices\", \"label\"}} lines (a path beside the job file, or absolute), or a built-in "
                        f"task ({sorted(BUILTIN_TASKS)})")
    include = str(Path(job.data.lm_eval_include).expanduser().resolve()) if job.data.lm_eval_include else ""
    if include and not Path(include).is_dir():
        raise SpecError(f"data.lm_eval_include: {job.data.lm_eval_include!r} is not a folder; give the folder of "
                        f"lm-eval task YAML files (a path beside the job file, or absolute)")
    content = {task_split(t): BUILTIN_TASKS.get(t) or (harness_version(t, include) if t.startswith(HARNESS)
                                                        else file_sha(t)) for t in files}
    sweeps = tuple(dataclasses.replace(s, tasks=json.dumps({n: content[n] for n in s.splits if n in content},
                                                           sort_keys=True))
                   if any(n in content for n in s.splits) else s for s in job.sweeps)
    return dataclasses.replace(job, data=dataclasses.replace(job.data, tasks=files, lm_eval_include=include),
                               sweeps=sweeps)


def harness_version(task: str, include: str) -> str:
    """What an lm-eval task's rows depend on besides the weights: lm-eval's version and, with an include folder,
    the content of every task file in it (a changed YAML or data file there is a new sweep)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("lm_eval")
    except PackageNotFoundError:
        raise SpecError(f"data.tasks {task!r} runs lm-evaluation-harness, which is not installed: "
                        f"pip install lm-eval") from None
    files = sorted(p for p in Path(include).rglob("*") if p.is_file()) if include else []
    digest = hashlib.sha256("\n".join(f"{p.relative_to(include)}:{file_sha(str(p))}" for p in files).encode())
    return f"lm_eval-{found}:{digest.hexdigest()[:16] if files else 'catalogue'}"


def _plugin_source(key: str, name: str) -> str:
    """The sha256 of the plugin module that registered a model or dataset under a plain name (in the run hash:
    changed code is a new run)."""
    if key == "model":
        from raysweep.models import MODELS as registry  # torch
    else:
        from raysweep.data.registry import DATASETS as registry  # torch
    return source_identity(f"{registry.origin(name)}:_")


def _kind_code(job: Job) -> Job:
    """Sweeps of a plugin's kind carry the sha256 of the plugin's source (`SweepSpec.code`, in the sweep's hash):
    changed analysis code is a new sweep, never mixed with the old one's rows (the trained weights are kept)."""
    if not job.plugins:
        return job
    load_plugins(job.plugins)
    sweeps = []
    for s in job.sweeps:
        k = kind(s.kind)
        code = source_identity(f"{k.module}:_") if not k.module.startswith("raysweep.") else ""
        sweeps.append(dataclasses.replace(s, code=code) if code != s.code else s)
    return dataclasses.replace(job, sweeps=tuple(sweeps))


def check(job: Job, source: str = "<job>") -> Job:
    """Raise one SpecError naming every problem of the job's code; return the job with its digests."""
    errors = problems(job)
    if errors:
        lines = "\n  - ".join(errors)
        raise SpecError(f"{source} is not a valid job:\n  - {lines}\nFix the file or the --set override named "
                        f"above (`raysweep show JOB` prints a valid spec).")
    return complete(job)


def check_builder(job: Job, in_shape: tuple, num_classes: int) -> None:
    """A user's model builder is called once in the driver: a wrong return type stops here (exit 2); so do
    `train.freeze` globs that name no parameter, a line sweep's `params` globs that name no tensor (found by
    the user-path matrix only after training, before) and an `init_from` checkpoint that does not fit the model."""
    subsets = [s for s in job.sweeps if s.params.on]
    if not (is_import_path(job.model.name) or job.train.freeze or job.train.init_from or subsets):
        return
    from raysweep.models import build_model  # torch
    from raysweep.train.external import pretrained

    model = build_model(job.model, tuple(in_shape), num_classes)
    frozen(job, model)
    names = list(model.state_dict())
    for s in subsets:
        s.params.selected(names, f"sweeps.{s.name}.params")
    if job.train.init_from:
        pretrained(job, model.state_dict())
