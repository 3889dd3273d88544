"""Small checks of names in a job, shared by the spec's modules (stdlib only)."""
from __future__ import annotations

import json
import re

IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # user code: "package.module:function"


def is_import_path(name: str) -> bool:
    return bool(IMPORT_PATH.fullmatch(name or ""))


def choice_problems(key: str, value, choices) -> list[str]:
    return [] if value in choices else [f"{key} = {value!r} is not valid; choose one of {list(choices)}"]


def metric_name(name: str) -> str:
    """A metric's column: its function's name (``top5_error``, ``pkg.module:brier`` -> ``brier``)."""
    return name.rsplit(":", 1)[-1]


def metric_name_problems(key: str, names) -> list[str]:
    """Metric columns must be distinct and not loss/error (whether each resolves is checked by
    raysweep.validate, which may import user code)."""
    cols = [metric_name(n) for n in names]
    if len(set(cols)) != len(cols) or {"loss", "error"} & set(cols):
        return [f"{key}: metric names must be distinct and not 'loss' or 'error', got {cols}"]
    return []


def kwargs_options(text: str) -> dict:
    """A user builder's or loader's keyword arguments, kept in the spec as canonical JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def kwargs_problems(where: str, text: str) -> list[str]:
    try:
        ok = isinstance(json.loads(text), dict)
    except ValueError:
        ok = False
    return [] if ok else [f"{where}.kwargs must be a table of keyword arguments, e.g. [{where}.kwargs] width = 32"]


BUILTIN_KWARGS = ("standin",)  # built-ins that take kwargs: the rehearsal's stand-in data (its sizes)


def name_problems(key: str, name: str, builtin: tuple, kwargs: str, plugins: bool = False) -> list[str]:
    """A built-in name (which takes no kwargs, but the stand-in), the import path of the user's code, or (with
    `plugins`) a plain name a plugin module registers; whether that code imports, registers the name and fits its
    contract is raysweep.validate's check."""
    if plugins and name not in builtin and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,99}", name or ""):
        return []
    if name in builtin and name not in BUILTIN_KWARGS:
        return [] if not kwargs_options(kwargs) else [
            f"{key.replace('.name', '.kwargs')} is for your own code (an import path); the built-in {name!r} takes "
            f"its settings from the job's fields: --set {key.replace('.name', '')}.FIELD=VALUE (e.g. --set "
            f"model.hidden=[128,64]; `raysweep show JOB` lists the fields)"]
    if name not in builtin and not is_import_path(name):
        return [f"{key} = {name!r} is neither a built-in ({sorted(builtin)}) nor an import path "
                f"'package.module:function'"]
    return []
