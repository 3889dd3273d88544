"""Find and load jobs: built-in ``jobs/<name>.toml`` files or a path to a user's own TOML; each is
parsed and checked as data (``raysweep.spec``), then its code (``raysweep.validate``)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import tomllib

from raysweep.errors import SpecError
from raysweep.spec import Job, apply_overrides, parse_job

JOBS_DIR = Path(__file__).parent / "jobs"


def builtin_jobs() -> dict[str, Path]:
    return {p.stem: p for p in sorted(JOBS_DIR.glob("*.toml"))}


def find_job_file(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"job file {str(path)!r} does not exist; give a built-in job name "
                            f"({', '.join(builtin_jobs())}) or the path to a .toml file")
        return path
    known = builtin_jobs()
    if name_or_path not in known:
        raise SpecError(f"unknown job {name_or_path!r}; built-in jobs are: {', '.join(known)} "
                        f"(or give the path to your own .toml file; `raysweep jobs` lists them)")
    return known[name_or_path]


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path} is not valid TOML: {exc}. Fix the syntax at that line.") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not a UTF-8 text file; a job is a TOML file") from None


def load_job(name_or_path: str, overrides: Iterable[str] = (), replicates: int | None = None) -> Job:
    """Resolve a job by name or path, apply ``--set`` overrides (and ``--replicates``), validate."""
    path = find_job_file(name_or_path)
    overrides = list(overrides) + ([f"replicates={replicates}"] if replicates is not None else [])
    raw = apply_overrides(paths_from(read_toml(path), path.parent), overrides)
    source = str(path) + (f" with overrides {overrides}" if overrides else "")
    return job_from_dict(raw, source)


def _beside(value, folder: Path):
    if not isinstance(value, str) or not value or "://" in value or value.startswith("~") or Path(value).is_absolute():
        return value
    return str((folder / value).resolve())


def paths_from(raw: dict, folder: Path) -> dict:
    """A job file's relative file paths (train.init_from, external checkpoints, data.root, data.tokenizer and
    data.tasks' files, model.config.from) read from the file's
    own folder, as a user who writes `init_from = "pretrained.safetensors"` beside the file means, wherever
    the command runs; `--set` values keep the working directory's meaning. Stored as absolute paths, so the
    run reopens from anywhere."""
    raw = dict(raw)
    if isinstance(raw.get("train"), dict) and "init_from" in raw["train"]:
        raw["train"] = {**raw["train"], "init_from": _beside(raw["train"]["init_from"], folder)}
    for key in ("root", "tokenizer"):
        if isinstance(raw.get("data"), dict) and raw["data"].get(key):
            raw["data"] = {**raw["data"], key: _beside(raw["data"][key], folder)}
    config = raw.get("model", {}).get("config") if isinstance(raw.get("model"), dict) else None
    if isinstance(config, dict) and isinstance(config.get("from"), str):
        raw["model"] = {**raw["model"], "config": {**config, "from": _beside(config["from"], folder)}}
    if isinstance(raw.get("data"), dict) and isinstance(raw["data"].get("tasks"), list):
        raw["data"] = {**raw["data"], "tasks": [_beside(t, folder) if str(t).endswith(".jsonl") else t
                                                for t in raw["data"]["tasks"]]}
    if isinstance(raw.get("external"), list):
        raw["external"] = [[_beside(f, folder) for f in files] if isinstance(files, list) else files
                           for files in raw["external"]]
    return raw


def job_from_dict(raw: dict, source: str = "<job>") -> Job:
    """A job from a raw (TOML-shaped) dict, checked as data and then its code; with its digests."""
    from raysweep import validate  # the job's code and files: pyarrow (external checkpoints), user modules

    return validate.check(parse_job(raw, source), source)
