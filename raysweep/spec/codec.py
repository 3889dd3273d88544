"""Typed JSON: any tree of frozen dataclasses to plain JSON values and back, driven by the classes' type
hints — one function each way, so a new class or field travels without anyone writing a field list.

What the hints may say: the JSON scalars (str, int, float, bool, None), ``tuple[X, ...]`` and ``tuple[X, Y]``,
a dataclass, and a union of those (``A | B``). A union of dataclasses is tagged: the value carries its class
name under ``"type"``, so `decode` knows which to build. Decoding is strict: an unknown or missing field (one
with no default), a value of the wrong type or an unknown tag raises ValueError naming the path to it.

Why our own and not msgspec, cattrs or pydantic: our values are frozen dataclasses of scalars, tuples and
unions only, the job parser (spec/parse.py) already reads the same hints, and this stays a page of code with
no dependency in the base layer (which imports no third-party package at all).
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing

TAG = "type"


@functools.cache
def hints(cls) -> dict:
    """A dataclass's fields and their resolved type hints (ClassVars left out)."""
    resolved = typing.get_type_hints(cls)
    return {f.name: resolved[f.name] for f in dataclasses.fields(cls)}


def _union_members(hint) -> tuple | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def encode(value, hint=None):
    """`value` as plain JSON values (dicts, lists, scalars); dataclasses under a union hint carry their tag."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {name: encode(getattr(value, name), h) for name, h in hints(type(value)).items()}
        members = _union_members(hint) if hint is not None else None
        if members and sum(dataclasses.is_dataclass(m) for m in members) > 1:
            out = {TAG: type(value).__name__, **out}
        return out
    if isinstance(value, (tuple, list)):
        args = typing.get_args(hint) if hint is not None else ()
        if len(args) == 2 and args[1] is Ellipsis:
            return [encode(v, args[0]) for v in value]
        if args and len(args) == len(value):
            return [encode(v, h) for v, h in zip(value, args)]
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} {value!r} as JSON")


def decode(hint, raw, where: str = "value"):
    """The value of type `hint` that `encode` wrote as `raw`."""
    members = _union_members(hint)
    if members is not None:
        return _decode_union(members, raw, where)
    if dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, raw, where)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if not isinstance(raw, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {raw!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(raw))
        if len(args) != len(raw):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(raw)}")
        return tuple(decode(h, v, f"{where}[{i}]") for i, (h, v) in enumerate(zip(args, raw)))
    if hint is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if hint is type(None) and raw is None:
        return None
    if hint in (str, int, bool) and isinstance(raw, hint) and not (hint is int and isinstance(raw, bool)):
        return raw
    if hint is typing.Any:
        return raw
    raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {raw!r}")


def _decode_dataclass(cls, raw, where: str):
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a {cls.__name__} (a JSON object), got {raw!r}")
    fields = hints(cls)
    unknown = sorted(set(raw) - set(fields) - {TAG})
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} of {cls.__name__}; its fields are {list(fields)}")
    if raw.get(TAG, cls.__name__) != cls.__name__:
        raise ValueError(f"{where}: tagged {raw[TAG]!r}, expected {cls.__name__}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            kwargs[f.name] = decode(fields[f.name], raw[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: {cls.__name__} needs {f.name!r}")
    return cls(**kwargs)


def _decode_union(members: tuple, raw, where: str):
    classes = {m.__name__: m for m in members if dataclasses.is_dataclass(m)}
    if isinstance(raw, dict) and len(classes) > 1:
        tag = raw.get(TAG)
        if tag not in classes:
            raise ValueError(f"{where}: tag {tag!r} is none of {list(classes)}")
        return _decode_dataclass(classes[tag], raw, where)
    problems = []
    for m in members:
        try:
            return decode(m, raw, where)
        except ValueError as exc:
            problems.append(str(exc))
    raise ValueError(f"{where}: {raw!r} is none of {[getattr(m, '__name__', m) for m in members]} "
                     f"({'; '.join(problems)})")
