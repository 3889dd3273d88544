"""TOML dict -> Job: unknown keys and wrong types are named with what is valid; then validation."""
from __future__ import annotations

import dataclasses
import math
import typing

from raysweep.errors import SpecError
from raysweep.spec.job import Job
from raysweep.spec.sweeps import MAX_INT, AlphaGrid


def parse_job(raw: dict, source: str = "<job>") -> Job:
    """Build a Job from a TOML dict; raises SpecError naming every problem at once."""
    errors: list[str] = []
    job = _build(Job, raw, "", errors)
    if not errors:
        errors = job.problems()
    if errors:
        lines = "\n  - ".join(errors)
        raise SpecError(f"{source} is not a valid job:\n  - {lines}\n"
                        f"Fix the file or the --set override named above (`raysweep show JOB` prints a valid spec).")
    return job


def parse_stored(raw: dict, source: str = "<stored job>") -> Job:
    """A Job from what `Job.to_dict()` wrote and JSON read back (a run's job.json): JSON's lists are
    the dict's tuples again, so an empty α `values` reads as the default it was, not as a user's
    empty list."""
    def tuples(v):
        if isinstance(v, dict):
            return {k: tuples(x) for k, x in v.items()}
        return tuple(tuples(x) for x in v) if isinstance(v, list) else v
    return parse_job(tuples(raw), source)


def _build(cls, raw, where: str, errors: list[str]):
    if not isinstance(raw, dict):
        errors.append(f"{where or 'job'} must be a table, got {type(raw).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in hints:
            errors.append(f"unknown key {_join(where, key)!r}; valid keys here are {names}")
    if cls is AlphaGrid and "values" in raw and isinstance(raw["values"], list) and not raw["values"]:
        errors.append(f"{_join(where, 'values')} is empty; give the α values, or drop it and use start/stop/num")
    kwargs = {}
    for name in names:
        if name in raw:
            value = _convert(hints[name], raw[name], _join(where, name), errors)
            if value is not _BAD:
                kwargs[name] = value
        elif cls is Job and name == "name":
            errors.append("the job has no 'name'; add name = \"...\" at the top of the file")
    try:
        return cls(**kwargs)
    except TypeError:
        return None


_BAD = object()


def _convert(hint, value, key: str, errors: list[str]):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):  # already built (Python API users pass spec objects)
            return value
        return _build(hint, value, key, errors) or _BAD
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            errors.append(f"{key} must be a list, got {value!r}")
            return _BAD
        if dataclasses.is_dataclass(item):
            built = [_build(item, v, f"{key}[{i}]", errors) for i, v in enumerate(value)]
            return tuple(built) if all(built) else _BAD
        items = [_convert(item, v, f"{key}[{i}]", errors) for i, v in enumerate(value)]
        return _BAD if _BAD in items else tuple(items)
    # a TOML table, as JSON
    if hint is str and key.endswith((".kwargs", ".options", ".config")) and isinstance(value, dict):
        import json

        return json.dumps(value, sort_keys=True)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            errors.append(f"{key} must be a finite number, got {value!r}")
            return _BAD
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        errors.append(f"{key} = {value} is out of range (at most 2**53 in size)")
        return _BAD
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    errors.append(f"{key} must be {hint.__name__}, got {value!r} ({type(value).__name__})")
    return _BAD


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
