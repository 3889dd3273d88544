"""Work items and specs through their JSON and back: every class, every field set to a value other than its
default, all the way down. The values are generated from the classes' type hints, so a new item class or
field is covered without an edit here."""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import typing

import pytest

from raysweep.spec import Job, codec
from raysweep.work import items as items_module
from raysweep.work.items import from_json, to_json
from raysweep.work.kinds import item_types

ITEM_CLASSES = tuple(item_types().values())  # every registered item class: the built-in kinds' and sharpness


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def other_than(hint, default, salt: int):
    """A value of type `hint` that differs from `default` (and, through `salt`, from its siblings')."""
    members = codec._union_members(hint)
    if members:
        return other_than(members[salt % len(members)], default, salt)
    if dataclasses.is_dataclass(hint):
        return non_default(hint, salt)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(other_than(args[0], None, salt + i) for i in range(2 + salt % 2))
        return tuple(other_than(h, None, salt + i) for i, h in enumerate(args))
    if hint is bool:
        return not default if isinstance(default, bool) else bool(salt % 2)
    if hint is int:
        return (default if isinstance(default, int) else 0) + 3 + salt
    if hint is float:
        return (default if isinstance(default, float) else 0.0) + 0.375 + salt
    if hint is str:
        return f"{default or 'v'}-{salt}"
    raise AssertionError(f"no generator for {hint!r}: teach other_than this type")


def non_default(cls, salt: int = 0):
    """An instance of `cls` whose every field differs from its default."""
    kwargs = {}
    for i, (name, hint) in enumerate(codec.hints(cls).items()):
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        d = _default(f)
        kwargs[name] = other_than(hint, None if d is dataclasses.MISSING else d, salt + i)
        assert kwargs[name] != d
    return cls(**kwargs)


def same_all_the_way_down(a, b, where="item"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} came back as {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            same_all_the_way_down(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_all_the_way_down(x, y, f"{where}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), where


@pytest.mark.parametrize("cls", ITEM_CLASSES, ids=lambda c: c.__name__)
def test_every_item_class_round_trips_with_every_field_set(cls):
    for salt in range(3):
        item = non_default(cls, salt)
        back = from_json(to_json(item), item_types())
        assert back == item
        same_all_the_way_down(item, back)
        assert json.loads(to_json(item))["type"] == cls.__name__


def test_every_dataclass_of_the_items_module_travels():
    """A dataclass added to items.py is either a registered work item class or a field of one."""
    reachable = set()

    def walk(hint):
        for m in codec._union_members(hint) or ():
            walk(m)
        if dataclasses.is_dataclass(hint) and hint not in reachable:
            reachable.add(hint)
            for h in codec.hints(hint).values():
                walk(h)
        for a in typing.get_args(hint) if typing.get_origin(hint) is tuple else ():
            walk(a)
    for cls in ITEM_CLASSES:
        walk(cls)
    defined = {c for _, c in inspect.getmembers(items_module, inspect.isclass)
               if dataclasses.is_dataclass(c) and c.__module__ == items_module.__name__}
    assert defined <= reachable, f"dataclasses no work item carries: {defined - reachable}"
    assert items_module.SharpnessSpec in reachable  # the nested spec whose loss broke sharpness (issue 1/6)


def test_the_job_spec_round_trips_through_the_codec():
    job = non_default(Job, 1)
    back = codec.decode(Job, json.loads(json.dumps(codec.encode(job))))
    same_all_the_way_down(job, back, "job")


def test_decode_names_what_is_wrong():
    item = non_default(ITEM_CLASSES[0])
    raw = json.loads(to_json(item))
    with pytest.raises(ValueError, match="unknown field"):
        from_json(json.dumps({**raw, "surprise": 1}), item_types())
    with pytest.raises(ValueError, match="type 'Nope' is none of the registered item classes"):
        from_json(json.dumps({**raw, "type": "Nope"}), item_types())
    bad = {**raw, "a": {**raw["a"], "replicate": "three"}}
    with pytest.raises(ValueError, match=r"work item\.a\.replicate: expected int"):
        from_json(json.dumps(bad), item_types())
    with pytest.raises(ValueError, match="needs 'sweep'"):
        from_json(json.dumps({k: v for k, v in raw.items() if k != "sweep"}), item_types())


def test_floats_and_ints_keep_their_types():
    spec = items_module.SharpnessSpec(alphas=(1.0, 0.5), radius=2.0)  # 1.0 is written as 1.0, read as float
    back = codec.decode(items_module.SharpnessSpec, json.loads(json.dumps(codec.encode(spec))))
    same_all_the_way_down(spec, back)
    with pytest.raises(ValueError):
        codec.decode(int, True)
