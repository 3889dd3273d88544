"""The sweep kinds' registry: what each kind is, as real callables, registered by its own module.

A kind is one module (the built-ins in ``raysweep/kinds/``; a user's anywhere, named in the job's
``plugins``) that calls `register(Kind(...))` when imported: its name in the job language, its family,
where its points go (a folder with one row schema) and which table they feed, its work item class, how its
items are planned (`plan(ctx, sweep, before)`), what is prepared before they run (`prepare`), the function
that evaluates one item on an actor (`evaluate(evaluator, job, item)`, torch imported inside it), how its
options are checked (`check`), how its table is built from the stored rows (`build_table`) and its figures
(`figures`). Item classes travel as JSON by their type hints (spec/codec.py); `register_item` names a class
`from_json` may build and, for an item evaluated apart from its sweep's kind (a line sweep's sharpness),
the function that evaluates it.

This module imports nothing of the kinds: the first lookup loads the built-in kind modules (``import
raysweep.kinds``), as open_lth's registries import their models; plugins are loaded with the job
(``raysweep.kinds.load_plugins``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.spec import sharpness_hash, sweep_hash


@dataclass(frozen=True)
class Kind:
    name: str  # in the job language: [[sweeps]] kind = "<name>"
    family: str  # "line" (pairs × α), "curve", "trajectory", "plane", "merge", or a user kind's own
    folder: str  # points/<folder>/: every file there has one schema
    table: str  # the table its rows feed (curves and barriers are the line and curve kinds')
    item: type  # its work item class (a frozen dataclass; travels as JSON)
    plan: Callable  # (ctx: kinds.base.Context, sweep, items planned before) -> its items, done or not
    evaluate: Callable  # (evaluator, job, item) -> pyarrow.Table of rows in `schema`, run on the actors
    schema: Any = None  # pyarrow schema of its rows (the folder's; provenance columns are added)
    pairs: Callable[[int, int, int], int] = lambda r, c, s: r  # (replicates, checkpoints, spawn steps) -> pairs
    tag: str = ""  # the papers' experiment (F: Frankle 2020, G: Goodfellow et al. 2015, B: Breuel 2015)
    prepare: Callable | None = None  # (job, store, items, info) -> items: write what they reference, once
    check: Callable | None = None  # (sweep, where) -> problems with the sweep's options for this kind
    build_table: Callable | None = None  # (store, job, exclude) -> its table; None: its rows as stored
    figures: Callable | None = None  # (job, sweep, tables) -> [report.figures.Figure]
    count: Callable | None = None  # (job, sweep, info, steps) -> `raysweep show`'s numbers of the sweep
    module: str = field(default="", compare=False)  # where it was registered (messages)


KINDS: dict[str, Kind] = {}
ITEMS: dict[str, type] = {}  # item class name -> class: what `from_json` may build
ITEM_EVALUATORS: dict[type, Callable] = {}  # item classes evaluated apart from their sweep's kind
_LOADED = False


def register(k: Kind) -> Kind:
    """Add a kind (its item class too); a name taken by another module is refused."""
    old = KINDS.get(k.name)
    if old is not None and old.module != k.module:
        raise SpecError(f"sweep kind {k.name!r} is registered twice: by {old.module} and by {k.module}; rename one")
    KINDS[k.name] = k
    register_item(k.item)
    return k


def register_item(cls: type, evaluate: Callable | None = None) -> type:
    ITEMS[cls.__name__] = cls
    if evaluate is not None:
        ITEM_EVALUATORS[cls] = evaluate
    return cls


def _builtins() -> None:
    """The built-in kinds, registered by their own modules on first use (raysweep/kinds/)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        import raysweep.kinds  # noqa: F401  (each module registers its kinds)


def kind(name: str) -> Kind:
    """The record of a sweep kind; a failed lookup names every kind."""
    _builtins()
    if name not in KINDS:
        raise SpecError(f"unknown sweep kind {name!r}; kinds are {list(KINDS)} (a kind of your own: name its module "
                        f"in the job's plugins = [\"package.module\"])")
    return KINDS[name]


def all_kinds() -> dict[str, Kind]:
    _builtins()
    return KINDS


def item_types() -> dict[str, type]:
    _builtins()
    return ITEMS


def evaluator_of(item) -> Callable:
    """The function that evaluates a work item: its class's own (sharpness), else its sweep kind's."""
    _builtins()
    return ITEM_EVALUATORS.get(type(item)) or kind(item.sweep_kind).evaluate


def of_table(table: str) -> tuple[str, ...]:
    """The kinds whose points a table is made of (barriers and points are made of the curves' kinds too)."""
    table = "curves" if table in ("barriers", "points") else table
    return tuple(k.name for k in all_kinds().values() if k.table == table)


def of_family(*families: str) -> tuple[str, ...]:
    return tuple(k.name for k in all_kinds().values() if k.family in families)


def sweep_folder(run_dir: str, sweep) -> str:
    """Where a sweep's points are stored: points/<its kind's folder>/<name>-<sweep hash>."""
    return paths.sweep_dir(run_dir, kind(sweep.kind).folder, sweep.name, sweep_hash(sweep))


def sharpness_folder(run_dir: str, sweep) -> str:
    return paths.sweep_dir(run_dir, "sharpness", sweep.name, sharpness_hash(sweep))
