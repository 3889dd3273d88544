"""``--set dotted.key=value`` overrides on a raw job dict; sweeps are addressed by name."""
from __future__ import annotations

import dataclasses
import json
import typing

import tomllib

from raysweep.errors import SpecError
from raysweep.spec.job import Job
from raysweep.spec.sweeps import SweepSpec


def parse_value(text: str):
    """``--set`` values are TOML values (``0.1``, ``[0, 100]``, ``true``); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply ``dotted.key=value`` overrides to a raw job dict (a deep copy is returned).

    Sweeps are addressed by name: ``sweeps.init_to_final.alpha.num=50``.
    """
    raw = json.loads(json.dumps(raw))
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"override {item!r} has no '='; write it as dotted.key=value, e.g. train.lr=0.05")
        key, text = item.split("=", 1)
        _set(raw, key.strip(), parse_value(text.strip()))
    return raw


def _set(raw: dict, key: str, value) -> None:
    parts, node, cls = key.split("."), raw, Job
    i = 0
    while i < len(parts) - 1:
        part = parts[i]
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise SpecError(f"override {key!r}: unknown key {part!r}; valid keys are {sorted(hints)}")
        if part == "sweeps" and cls is Job:
            i += 1
            sweeps = node.setdefault("sweeps", [])
            match = [s for s in sweeps if isinstance(s, dict) and s.get("name") == parts[i]]
            if not match:
                raise SpecError(f"override {key!r}: no sweep named {parts[i]!r}; the job's sweeps are "
                                f"{[s.get('name') for s in sweeps]}")
            node, cls = match[0], SweepSpec
        else:
            node, cls = node.setdefault(part, {}), hints[part]
            if not dataclasses.is_dataclass(cls):
                raise SpecError(f"override {key!r}: {part!r} is not a table")
        i += 1
    last = parts[-1]
    hints = typing.get_type_hints(cls)
    if last not in hints:
        raise SpecError(f"override {key!r}: unknown key {last!r}; valid keys here are {sorted(hints)}")
    node[last] = value
