"""Compaction: a line sweep's one-file-per-item points become a few large Parquet parts.

A sweep of the ImageNet job stores 37,500 one-row item files (one α per item); a 100-replicate run
1.25M. Once a sweep folder holds COMPACT_MIN_ITEMS item files, `compact` rewrites them as parts of
at most PART_ITEMS items each, in three steps that make it atomic, idempotent and resumable:

1. write the part `_part-<digest>.parquet` (its rows sorted by item; the digest names the items);
2. write its record `_part-<digest>.json` — the commit point: from here on the items are the part's;
3. delete the item files the record lists.

Readers (work/stored.py: `data_files`, `done_items`) take a part only with its record, and an item
file only if no record lists it, so a compaction killed anywhere leaves every point read exactly once; running it
again finishes step 3, or rewrites a part that had no record yet under the same name.
"""
from __future__ import annotations

import hashlib
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc

from raysweep.io import paths
from raysweep.io.paths import is_part, item_key
from raysweep.io.store import Store
from raysweep.work.items import key_replicates
from raysweep.work.stored import records

COMPACT_MIN_ITEMS = 1000  # folders with fewer item files are left as they are ($RAYSWEEP_COMPACT_MIN)
PART_ITEMS = 100_000  # items per part


def _min_items() -> int:
    return int(os.environ.get("RAYSWEEP_COMPACT_MIN", COMPACT_MIN_ITEMS))


def compact(store: Store, folder: str, min_items: int | None = None) -> int:
    """Compact the folder's item files into parts; returns how many item files were folded in."""
    files = store.list(folder, paths.PARQUET)
    committed = records(store, folder)
    taken = {k for keys in committed.values() for k in keys}
    delete_all(store, [f for f in files if not is_part(f) and item_key(f) in taken])  # step 3 of one killed before
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
        part = paths.part(folder, digest)
        table = store.read_table(group)
        table = table.take(pa.compute.sort_indices(table, [("item", "ascending")])) if "item" in table.schema.names \
            else table
        store.write_table(part, table)
        store.write_json(paths.part_record(part), {"items": keys, "rows": table.num_rows})
        delete_all(store, group)
    return len(items)


def delete_all(store: Store, files: list[str]) -> None:
    """Delete the files, 16 requests in flight (an object store answers each in a round trip)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(store.delete, files))


def compact_on_cluster(store: Store, folders: list[str]) -> list[int]:
    """`compact` of each folder as a Ray task of 1 CPU on the cluster this process joined: the driver only
    waits (its time and memory per work item stay flat; the tasks read and delete the item files)."""
    import ray

    least = _min_items()  # the driver's setting, not the workers' environment
    due = [sum(not is_part(f) for f in store.list(folder, paths.PARQUET)) >= least for folder in folders]
    task = ray.remote(num_cpus=1, max_retries=2)(_compact_at)  # only where there is something to fold
    refs = {f: task.remote(store.address, f, least) for f, d in zip(folders, due) if d}
    return [ray.get(refs[f]) if f in refs else compact(store, f) for f in folders]


def compact_folders(store: Store, folders: list[str]) -> list[int]:
    """`compact` of each folder: as Ray tasks when this process joined a Ray (never imported for it),
    else here."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return compact_on_cluster(store, folders)
    return [compact(store, f) for f in folders]


def _compact_at(address: str, folder: str, min_items: int) -> int:
    return compact(Store(address), folder, min_items)


def drop_replicate(store: Store, folder: str, k: int) -> None:
    """Remove replicate k's rows from the folder's parts (forgetting a replicate): the remaining rows
    become a new part and record before the old record and part go."""
    for part, keys in records(store, folder).items():
        gone = [key for key in keys if k in key_replicates(key)]
        if not gone:
            continue
        kept = [key for key in keys if key not in set(gone)]
        if kept:
            table = store.read_table([part])
            table = table.filter(pc.is_in(table["item"], value_set=pa.array(kept)))
            new = paths.part(folder, hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16])
            store.write_table(new, table)
            store.write_json(paths.part_record(new), {"items": kept, "rows": table.num_rows})
        forget_file(store, part)


def forget_file(store: Store, path: str) -> None:
    """Delete a points file: an item file, or a part with its record (record first: from then on its
    items count as missing, and are evaluated again)."""
    if is_part(path):
        store.delete(paths.part_record(path))
    store.delete(path)
