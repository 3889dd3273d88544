"""What is stored of a run's work, read without changing it: a prepared file and its sha256 (a Ref),
the Parquet files that hold a sweep folder's points (each point once, whether it is still an item file
or already inside a compacted part: sweep/compact.py), and the items that are done."""
from __future__ import annotations

from raysweep.io import paths
from raysweep.io.paths import is_part, item_key
from raysweep.io.store import Store
from raysweep.work.items import Ref


def stored_ref(store: Store, path: str) -> Ref:
    """A prepared file and its sha256 from its record ("" while it is not written, or its record is
    damaged: then it is prepared again). Reads only."""
    meta = paths.record(path)
    try:
        sha = store.read_json(meta)["sha256"] if store.exists(meta) else ""
    except (ValueError, KeyError, TypeError):
        sha = ""
    return Ref(path, sha if isinstance(sha, str) else "")


def records(store: Store, folder: str) -> dict[str, list[str]]:
    """part path -> the item keys its record lists (committed parts only)."""
    out = {}
    for rec in store.list(folder, paths.JSON):
        if is_part(rec):
            out[rec.removesuffix(paths.JSON) + paths.PARQUET] = store.read_json(rec)["items"]
    return out


def data_files(store: Store, folder: str, files: list[str] | None = None) -> list[str]:
    """The Parquet files that hold the folder's points, each point once: committed parts, and item
    files no record lists. `files` is the folder's .parquet listing when the caller has it."""
    files = store.list(folder, paths.PARQUET) if files is None else files
    committed = records(store, folder)
    taken = {k for keys in committed.values() for k in keys}
    return [f for f in files if (f in committed) or (not is_part(f) and item_key(f) not in taken)]


def done_items(store: Store, folder: str, files: list[str] | None = None) -> set[str]:
    """Item paths whose points are stored, as files or inside committed parts."""
    files = store.list(folder, paths.PARQUET) if files is None else files
    done = {f for f in files if not is_part(f)}
    for keys in records(store, folder).values():
        done |= {paths.point_file(folder, k) for k in keys}
    return done


def stored_counts(store: Store, folder: str) -> dict[str, int]:
    """Item path -> how many times the folder holds its points as the tables read them: once per committed
    part whose record lists it, once for an item file no part has taken (the rehearsal's exactly-once check)."""
    files = store.list(folder, paths.PARQUET)
    committed = records(store, folder)
    counts: dict[str, int] = {}
    for keys in committed.values():
        for k in keys:
            p = paths.point_file(folder, k)
            counts[p] = counts.get(p, 0) + 1
    taken = {k for keys in committed.values() for k in keys}
    for f in files:
        if not is_part(f) and item_key(f) not in taken:
            counts[f] = counts.get(f, 0) + 1
    return counts
