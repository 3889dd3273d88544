"""Training input from a packed dataset (data/packed.py) through Ray Data: the shards' row groups
are read, decoded and augmented by Ray tasks on any CPU of the cluster — CPU-only nodes included, so
decoding is not bound to the GPU node's cores — and streamed to each training rank in order.

The order of an epoch is a pure function of (replicate seed, epoch, window): the row groups of every
shard are permuted, cut into windows of `window` groups, and the rows of each window are permuted
across all its groups (a block shuffle, as CorgiPile and MosaicML's streaming do), so a batch mixes
rows of up to `window` groups wherever they were packed — a dataset packed class by class still
trains on mixed batches, and one packed shuffled (raysweep's own) is mixed twice. Rank r of W takes
positions [r·m, (r+1)·m) of that sequence with m = ⌊n/W⌋, so every epoch visits each example exactly
once across the ranks (the n − W·m < W left over are a different few each epoch). Each example's
crop and flip are drawn from (seed, epoch, its index): which task decodes it does not matter, and
Ray Data keeps the order (`preserve_order`), so a streamed run is bitwise reproducible for a given
number of ranks, and a resumed one skips exactly the rows it had consumed (no decode is wasted).

Two stages: a read task per window (at most READERS at a time) holds the window's encoded row groups
— memory: READERS × window × the mean row group's bytes, `window_groups` picks the window so that one
is about WINDOW_BYTES — and hands its rows on in the window's order, CHUNK rows a block; decode tasks
(1 CPU each) turn each block into augmented uint8 images.
"""
from __future__ import annotations

import functools
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from raysweep.connect import (
    DECODE_CPUS,  # a decode task: what training must leave free
    init_ray,
)
from raysweep.data.images import IMAGENET_MEAN, IMAGENET_STD
from raysweep.data.packed import find
from raysweep.data.subset import pack_positions, subset_rows
from raysweep.data.types import DatasetInfo, Splits
from raysweep.data.watch import Watched
from raysweep.errors import DatasetMissing
from raysweep.io.store import Store

SCALE, RATIO = (0.1, 1.0), (0.8, 1.25)  # RandomResizedCrop as OpenLTH trains ImageNet


WINDOW_BYTES = 1 << 30  # a read task's window of encoded row groups: about 1 GiB
MIN_WINDOW = 8  # row groups, whatever their size
READERS = 2  # read tasks at a time (a window being handed on while the next one is read)
CHUNK = 128  # rows per decode task
BLOCK_BYTES = 16 << 20  # most bytes of a block between the stages (encoded rows: ~128 ImageNet JPEGs)
READ_CPUS = 0.25  # a read task mostly waits on the store


@dataclass(frozen=True)
class Piece:
    groups: tuple[tuple[str, int], ...]  # (shard relative to the dataset's folder, row group) this piece reads
    rows: tuple[tuple[int, int], ...]  # (position in `groups`, row of that group), in the order they are emitted


def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k)) % (2**61 - 1)
    return torch.Generator().manual_seed(seed)


def window_groups(shards: list[dict], window: int = 0) -> int:
    """The window in row groups: `window` when set (data.shuffle_window), else as many groups as fit in
    WINDOW_BYTES (at least MIN_WINDOW; all of a small dataset)."""
    n = sum(len(s["groups"]) for s in shards)
    if window > 0:
        return min(window, max(n, 1))
    mean = sum(s["bytes"] for s in shards) / max(n, 1)
    return max(1, min(n, max(MIN_WINDOW, int(WINDOW_BYTES // max(mean, 1)))))


def epoch_pieces(shards: list[dict], seed: int, epoch: int, rank: int = 0, world: int = 1,
                 skip_rows: int = 0, window: int = 0) -> list[Piece]:
    """Rank `rank`'s pieces of epoch `epoch` (one per window it draws from), less its first `skip_rows`
    rows (a resumed epoch)."""
    groups = [(s["path"], g, n) for s in shards for g, n in enumerate(s["groups"])]
    order = torch.randperm(len(groups), generator=_generator(seed, epoch)).tolist()
    w = window_groups(shards, window)
    m = sum(n for _, _, n in groups) // world
    lo, hi = rank * m + skip_rows, (rank + 1) * m
    out, pos = [], 0
    for start in range(0, len(order), w):
        members = order[start:start + w]
        size = sum(groups[gi][2] for gi in members)
        if pos + size > lo and pos < hi:
            flat = [(k, r) for k, gi in enumerate(members) for r in range(groups[gi][2])]
            perm = torch.randperm(size, generator=_generator(seed, epoch, start, 7)).tolist()
            rows = [flat[i] for i in perm[max(lo - pos, 0):min(hi - pos, size)]]
            used = sorted({k for k, _ in rows})
            at = {k: i for i, k in enumerate(used)}
            out.append(Piece(tuple(groups[members[k]][:2] for k in used), tuple((at[k], r) for k, r in rows)))
        pos += size
        if pos >= hi:
            break
    return out


def decode(data: bytes) -> torch.Tensor:
    """An encoded image as a (3, H, W) uint8 tensor: libjpeg-turbo / libpng through torchvision (grayscale
    and CMYK JPEGs converted to RGB), PIL for whatever it cannot read."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        return torch.from_numpy(img.copy()).permute(2, 0, 1).contiguous()


def crop_params(height: int, width: int, g: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params with scale SCALE, ratio RATIO, drawn from `g`."""
    import math

    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(SCALE[0], SCALE[1], generator=g).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g).item())
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
            return top, left, h, w
    in_ratio = width / height  # fallback: the central crop of the allowed ratio
    w, h = (width, int(round(width / RATIO[0]))) if in_ratio < RATIO[0] else (
        (int(round(height * RATIO[1])), height) if in_ratio > RATIO[1] else (width, height))
    return (height - h) // 2, (width - w) // 2, h, w


def train_view(data: bytes, index: int, seed: int, epoch: int, size: int) -> torch.Tensor:
    """RandomResizedCrop(size, scale (0.1, 1), ratio (0.8, 1.25)) + horizontal flip, from (seed, epoch, index)."""
    from torchvision.transforms.v2 import functional as F

    img = decode(data)
    g = _generator(seed, epoch, index, 11)
    top, left, h, w = crop_params(img.shape[1], img.shape[2], g)
    out = F.resized_crop(img, top, left, h, w, [size, size], antialias=True)
    return out.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else out


def eval_view(data: bytes, size: int) -> torch.Tensor:
    """Resize the short side to size·256/224, then the central size × size crop (ImageNet's evaluation)."""
    from torchvision.transforms.v2 import functional as F

    img = F.resize(decode(data), [size * 256 // 224], antialias=True)
    return F.center_crop(img, [size, size])


def read_group(store: Store, shard: str, group: int):
    import pyarrow.parquet as pq

    with store.fs.open_input_file(store.full(shard)) as f:
        return pq.ParquetFile(f).read_row_group(group, columns=["index", "label", "image"])


def read_pieces(batch: dict, dataset: str, chunk: int = CHUNK):
    """Ray Data's first stage (a task per piece): the piece's row groups read, its rows handed on in
    the piece's order as encoded bytes, `chunk` rows at a time."""
    store = Store(dataset)
    for groups, rows in zip(batch["groups"], batch["rows"]):
        cols = [read_group(store, str(shard), int(g)) for shard, g in groups]
        cols = [tuple(t.column(c).to_pylist() for c in ("index", "label", "image")) for t in cols]
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            image = np.empty(len(part), dtype=object)
            image[:] = [cols[k][2][r] for k, r in part]
            yield {"index": np.asarray([cols[k][0][r] for k, r in part], dtype=np.int64),
                   "label": np.asarray([cols[k][1][r] for k, r in part], dtype=np.int64), "image": image}


def decode_rows(batch: dict, seed: int, epoch: int, size: int, trace: bool = False) -> dict:
    """Ray Data's second stage (tasks of 1 CPU): encoded rows decoded and augmented, in order."""
    xs = [train_view(bytes(data), int(i), seed, epoch, size).numpy() for data, i in zip(batch["image"], batch["index"])]
    out = {"image": np.stack(xs) if xs else np.zeros((0, 3, size, size), np.uint8),
           "label": np.asarray(batch["label"], dtype=np.int64), "index": np.asarray(batch["index"], dtype=np.int64)}
    if trace:  # which node decoded each row (tests, provenance)
        import ray

        out["node"] = np.asarray([ray.get_runtime_context().get_node_id()] * len(xs))
    return out


def stream(dataset: str, shards: list[dict], size: int, batch_size: int, seed: int, epoch: int, skip: int = 0,
           workers: int = 0, rank: int = 0, world: int = 1, trace: bool = False, window: int = 0):
    """Rank `rank`'s batches of one epoch: (uint8 images, int64 labels[, indices, nodes]), `batch_size`
    rows each (the last partial), after `skip` batches. Reading and decoding run in Ray tasks (on the
    Ray this process is connected to; a local one is started if none is), `workers` decode tasks at a
    time at most (0: as many as the cluster's CPUs allow); `window`: row groups shuffled together
    (0: `window_groups`'s choice)."""
    import ray

    init_ray()
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    pieces = epoch_pieces(shards, seed, epoch, rank, world, skip * batch_size, window)
    if not pieces:
        return
    ds = ray.data.from_items([{"groups": [list(g) for g in p.groups], "rows": [list(r) for r in p.rows]}
                              for p in pieces], override_num_blocks=len(pieces))
    ctx = ds.context  # this stream's own settings (the process's DataContext is left as it was)
    ctx.execution_options.preserve_order = True  # the epoch's order is the pieces' order
    ctx.enable_progress_bars = ctx.print_on_execution_start = False  # raysweep's progress lines say it
    ctx.target_max_block_size = BLOCK_BYTES  # a read task hands rows on as it reads them, not a window at once
    ds = ds.map_batches(
        read_pieces,
        batch_size=1,
        num_cpus=READ_CPUS,
        concurrency=min(READERS, len(pieces)),
        zero_copy_batch=True,
        fn_kwargs={"dataset": dataset},
    )
    ds = ds.repartition(target_num_rows_per_block=CHUNK)  # a read task's output, cut into decode tasks' blocks
    kwargs = {"concurrency": workers} if workers else {}
    ds = ds.map_batches(decode_rows, batch_size=None, num_cpus=DECODE_CPUS, zero_copy_batch=True, **kwargs,
                        fn_kwargs={"seed": seed, "epoch": epoch, "size": size, "trace": trace})
    batches = ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=4, drop_last=False)
    for b in Watched(batches, f"rank {rank}'s training stream (epoch {epoch})"):
        out = (torch.from_numpy(b["image"].copy()), torch.from_numpy(b["label"].copy()))  # Ray hands read-only views
        yield (*out, torch.from_numpy(b["index"].copy()), list(b["node"])) if trace else out


def packed_splits(spec, store: Store, cache=None):
    """A packed dataset (data.source = "store") as Splits: the training split streamed (`stream`), the
    validation split decoded once (eval_view) and kept in the store's split cache."""
    if store is None:
        raise DatasetMissing(f"data.source = \"store\": the packed dataset {spec.name!r} is read from a store, and "
                             f"none was given")
    target, man = find(store, spec.root or spec.name)
    size = spec.image_size
    val = man["splits"]["val"]

    def decode_val():
        views, labels = [], []
        for shard in val["shards"]:
            for g in range(len(shard["groups"])):
                t = read_group(target, shard["path"], g)
                images = t.column("image").to_pylist()
                with ThreadPoolExecutor() as pool:  # libjpeg-turbo releases the GIL
                    views += list(pool.map(lambda b: eval_view(b, size), images))
                labels += t.column("label").to_pylist()
        return (torch.stack(views) if views else torch.zeros((0, 3, size, size), dtype=torch.uint8),
                torch.tensor(labels, dtype=torch.int64))

    identity = [("packed", man["fingerprint"]), ("eval_view", size)]
    test_x, test_y = cache.get(f"packed-{man['name']}", "val", identity, decode_val) if cache else decode_val()
    train = man["splits"]["train"]

    def train_rows(n: int):
        def decode_subset():
            return subset_rows(functools.partial(read_group, target), eval_view, train["shards"],
                               pack_positions(man, n), size)
        if cache is None:
            return decode_subset()
        return cache.get(f"packed-{man['name']}", f"train_subset-{n}", [*identity, ("train_subset", n)], decode_subset)

    return Splits(None, torch.full((train["count"],), -1, dtype=torch.int64),  # labels come with the stream
                  test_x, test_y, len(man["classes"]), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  stream=functools.partial(stream, target.address, train["shards"], size, window=spec.shuffle_window),
                  image_shape=(3, size, size),
                  origin=cache.last_source if cache else "decoded", train_rows=train_rows)


def packed_info(spec, store: Store | None):
    if store is None:
        raise DatasetMissing(f"data.source = \"store\": {spec.name!r} is read from the store, and none was given")
    _, man = find(store, spec.root or spec.name)
    return DatasetInfo((3, spec.image_size, spec.image_size), len(man["classes"]),
                       {"train": man["splits"]["train"]["count"], "test": man["splits"]["val"]["count"]})
