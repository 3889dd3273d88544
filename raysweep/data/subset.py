"""The "train_subset" split's examples: which training examples it holds (subset_indices; a shuffled
pack's first rows) and, for packed datasets, reading them into one tensor in the evaluation view."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

SUBSET_SEED = 20_150_000  # the train_subset's fixed seed: every job on a dataset evaluates the same examples


def subset_indices(n_train: int, n: int) -> torch.Tensor:
    """Positions of the "train_subset" split in the training split: n of them drawn without replacement
    by a generator seeded SUBSET_SEED (all of them when n >= n_train), in increasing order (files and row
    groups are then read front to back)."""
    if n >= n_train:
        return torch.arange(n_train)
    g = torch.Generator().manual_seed(SUBSET_SEED)
    return torch.randperm(n_train, generator=g)[:n].sort().values


def pack_positions(man: dict, n: int) -> list[int]:
    """Rows of a packed training split that make its train_subset of n: a shuffled pack's first n rows (its
    order is a seeded permutation: they are a uniform sample, read from the first shards only), else the
    rows at `subset_indices` (a pack in the listing's order, class by class)."""
    count = man["splits"]["train"]["count"]
    if man.get("shuffle_seed") is not None:
        return list(range(min(n, count)))
    return subset_indices(count, n).tolist()


def subset_rows(read_group: Callable, view: Callable, shards: list[dict], positions: list[int],
                size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows at sorted `positions` of the shards (concatenated in order) through `view(bytes, size)` into
    one preallocated uint8 tensor; each row group holding one is read once (`read_group(shard path, g)`)."""
    wanted: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (shard, group) -> (row in group, out position)
    start, it = 0, iter(enumerate(positions))
    out_at, p = next(it, (None, None))
    for shard in shards:
        for g, rows in enumerate(shard["groups"]):
            while p is not None and p < start + rows:
                wanted.setdefault((shard["path"], g), []).append((p - start, out_at))
                out_at, p = next(it, (None, None))
            start += rows
    x = torch.empty((len(positions), 3, size, size), dtype=torch.uint8)
    y = torch.empty(len(positions), dtype=torch.int64)
    for (path, g), rows in wanted.items():
        t = read_group(path, g)
        images, labels = t.column("image"), t.column("label").to_pylist()
        with ThreadPoolExecutor() as pool:  # libjpeg-turbo releases the GIL
            views = list(pool.map(lambda r: view(images[r[0]].as_py(), size), rows))
        for (r, at), image in zip(rows, views):
            x[at], y[at] = image, labels[r]
    return x, y

