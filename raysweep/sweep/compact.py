"""Compaction: a line sweep's one-file-per-item points become a few large Parquet parts.

A sweep of the ImageNet job stores 37,500 one-row item files (one α per item); a 100-replicate run
1.25M. Once a sweep folder holds COMPACT_MIN_ITEMS item files, `compact` rewrites them as parts of
at most PART_ITEMS items each, in three steps that make it atomic, idempotent and resumable:

1. write the part `_part-<digest>.parquet` (its rows sorted by item; the digest names the items);
2. write its record `_part-<digest>.json` — the commit point: from here on the items are the part's;
3. delete the item files the record lists.

Readers (`data_files`, `done_items`) take a part only with its record, and an item file only if no
record lists it, so a compaction killed anywhere leaves every point read exactly once; running it
again finishes step 3, or rewrites a part that had no record yet under the same name.
"""
from __future__ import annotations

import hashlib
import os

from raysweep.io.store import Store

PART_PREFIX = "_part-"
COMPACT_MIN_ITEMS = 1000  # folders with fewer item files are left as they are ($RAYSWEEP_COMPACT_MIN)
PART_ITEMS = 100_000  # items per part


def _min_items() -> int:
    return int(os.environ.get("RAYSWEEP_COMPACT_MIN", COMPACT_MIN_ITEMS))


def is_part(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(PART_PREFIX)


def item_key(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet")


def records(store: Store, folder: str) -> dict[str, list[str]]:
    """part path -> the item keys its record lists (committed parts only)."""
    out = {}
    for rec in store.list(folder, ".json"):
        if is_part(rec):
            out[rec.removesuffix(".json") + ".parquet"] = store.read_json(rec)["items"]
    return out


def data_files(store: Store, folder: str, files: list[str] | None = None) -> list[str]:
    """The Parquet files that hold the folder's points, each point once: committed parts, and item
    files no record lists. `files` is the folder's .parquet listing when the caller has it."""
    files = store.list(folder, ".parquet") if files is None else files
    committed = records(store, folder)
    taken = {k for keys in committed.values() for k in keys}
    return [f for f in files if (f in committed) or (not is_part(f) and item_key(f) not in taken)]


def done_items(store: Store, folder: str, files: list[str] | None = None) -> set[str]:
    """Item paths whose points are stored, as files or inside committed parts."""
    files = store.list(folder, ".parquet") if files is None else files
    done = {f for f in files if not is_part(f)}
    for keys in records(store, folder).values():
        done |= {f"{folder}/{k}.parquet" for k in keys}
    return done


def compact(store: Store, folder: str, min_items: int | None = None) -> int:
    """Compact the folder's item files into parts; returns how many item files were folded in."""
    import pyarrow as pa

    files = store.list(folder, ".parquet")
    committed = records(store, folder)
    taken = {k for keys in committed.values() for k in keys}
    for f in files:  # step 3 of a compaction killed before it ended
        if not is_part(f) and item_key(f) in taken:
            store.delete(f)
    for f in files:  # parts whose record was never written: never read, rewritten below if still due
        if is_part(f) and f not in committed:
            store.delete(f)
    items = sorted(f for f in files if not is_part(f) and item_key(f) not in taken)
    if len(items) < (min_items if min_items is not None else _min_items()):
        return 0
    for i in range(0, len(items), PART_ITEMS):
        group = items[i:i + PART_ITEMS]
        keys = [item_key(f) for f in group]
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        part = f"{folder}/{PART_PREFIX}{digest}"
        table = store.read_table(group)
        table = table.take(pa.compute.sort_indices(table, [("item", "ascending")])) if "item" in table.schema.names \
            else table
        store.write_table(f"{part}.parquet", table)
        store.write_json(f"{part}.json", {"items": keys, "rows": table.num_rows})
        for f in group:
            store.delete(f)
    return len(items)


def drop_replicate(store: Store, folder: str, k: int) -> None:
    """Remove replicate k's rows from the folder's parts (forgetting a replicate): the remaining rows
    become a new part and record before the old record and part go."""
    import pyarrow.compute as pc

    from raysweep.sweep.items import key_replicates

    for part, keys in records(store, folder).items():
        gone = [key for key in keys if k in key_replicates(key)]
        if not gone:
            continue
        kept = [key for key in keys if key not in set(gone)]
        old = part.removesuffix(".parquet")
        if kept:
            table = store.read_table([part])
            table = table.filter(pc.is_in(table["item"], value_set=__import__("pyarrow").array(kept)))
            digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]
            new = f"{folder}/{PART_PREFIX}{digest}"
            store.write_table(f"{new}.parquet", table)
            store.write_json(f"{new}.json", {"items": kept, "rows": table.num_rows})
        store.delete(f"{old}.json")
        store.delete(f"{old}.parquet")
