"""Benchmark 9 — training input: decode + augment throughput per CPU core.

raysweep's stream (`data/streams.py`: packed Parquet shards, Ray Data tasks, torchvision's
libjpeg-turbo decode, RandomResizedCrop(224, scale (0.1, 1), ratio (0.8, 1.25)) + flip on uint8
tensors) against the strongest plain loader a researcher would write: torchvision's ImageFolder +
DataLoader(num_workers = cores) + PIL decode + the same transforms, on the same JPEGs (ImageNet-like
sizes, ~110 kB on average). Both use every core of the machine; the figure is images/s per core, and
the cores per GPU needed to feed 3,000 images/s follow from it.

    python benchmarks/decode.py              # 2,000 JPEGs; --images N for fewer
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))


def steady(batches) -> float:
    """images/s from the first batch on: the start-up (worker processes, Ray Data's executor) is a
    one-off per epoch, nothing against an epoch of ImageNet."""
    it = iter(batches)
    next(it)
    t, n = time.perf_counter(), 0
    for b in it:
        n += len(b[1])
    return n / (time.perf_counter() - t)


def write_jpegs(root: Path, n: int, classes: int = 10, seed: int = 0) -> float:
    """n JPEGs in an ImageFolder tree (train/ and a small val/), ImageNet-like: 500x375 and other common
    sizes, smooth content with noise, quality 90. Returns their mean size in kB."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (500, 333), (375, 500), (640, 480), (500, 400)]
    total = 0
    for split, count in (("train", n), ("val", classes)):
        for i in range(count):
            w, h = sizes[i % len(sizes)]
            base = Image.fromarray(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)).resize((w, h))
            noise = rng.normal(0, 18, (h, w, 3))
            img = Image.fromarray(np.clip(np.asarray(base.filter(ImageFilter.GaussianBlur(2)), float) + noise, 0, 255)
                                  .astype(np.uint8))
            d = root / split / f"c{i % classes:02d}"
            d.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            (d / f"{i:06d}.JPEG").write_bytes(buf.getvalue())
            total += len(buf.getvalue()) if split == "train" else 0
    return total / n / 1000


def baseline(root: Path, cores: int, batch: int = 64) -> float:
    """images/s of ImageFolder + DataLoader + PIL, `cores` workers."""
    import torch
    from torchvision import datasets
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(224, scale=(0.1, 1.0), ratio=(0.8, 1.25)), T.RandomHorizontalFlip(),
                    T.PILToTensor()])
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=cores,
                                         persistent_workers=False)
    return steady(loader)


def data_wait(batches, step_s: float, warm: int = 5) -> tuple[float, float]:
    """The share of the loop's time spent waiting for input when each step takes `step_s` (a GPU step:
    the host sleeps, leaving the cores to decoding): (over the epoch after its first `warm` steps, over
    the whole epoch from its first batch on, the pipeline's ramp-up included)."""
    waits, t0 = [], time.perf_counter()
    it = iter(batches)
    while True:
        t = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        waits.append(time.perf_counter() - t)
        time.sleep(step_s)
    total = time.perf_counter() - t0
    steady = sum(waits[warm:]) / (sum(waits[warm:]) + step_s * len(waits[warm:]))
    return steady, sum(waits) / total


def raysweep_stream(root: Path, cores: int, batch: int = 64, step_s: float = 0.2) -> tuple[float, float, float, int]:
    """(images/s of the packed stream on a local Ray of `cores` CPUs with the window shuffle on,
    single-core decode+augment images/s, data wait at a `step_s` step, the window in row groups)."""
    from raysweep.connect import init_ray, shutdown_ray
    from raysweep.data import packed, streams
    from raysweep.io.store import Store

    init_ray(num_cpus=cores)
    try:
        store = Store(str(root / "store"))
        folder, man = packed.pack(str(root), "bench", store, shard_images=256)
        target, shards = store.sub(folder), man["splits"]["train"]["shards"]
        list(streams.stream(target.address, shards[:1], 224, batch, 0, 99))  # warm: workers, imports
        rate = steady(streams.stream(target.address, shards, 224, batch, 0, 0))
        wait = data_wait(streams.stream(target.address, shards, 224, batch, 0, 1), step_s)
        group = streams.read_group(target, shards[0]["path"], 0)
        images = group.column("image").to_pylist()
        t = time.perf_counter()
        for i, b in enumerate(images):
            streams.train_view(b, i, 0, 0, 224)
        single = len(images) / (time.perf_counter() - t)
        return rate, single, wait, streams.window_groups(shards)
    finally:
        shutdown_ray()


def main() -> None:
    from common import publish, table

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kb = write_jpegs(root, args.images)
        base = baseline(root, cores)
        ours, single, wait, window = raysweep_stream(root, cores)
    rows = [
        ["ImageFolder + DataLoader(shuffle) + PIL (the baseline)", f"{base:,.0f}", f"{base / cores:,.0f}", "1.00x"],
        [
            f"raysweep stream: packed shards, window shuffle ({window} row groups), Ray Data read + decode tasks",
            f"{ours:,.0f}",
            f"{ours / cores:,.0f}",
            f"{ours / base:.2f}x",
        ],
        ["raysweep decode + augment alone, one core (no Ray)", f"{single:,.0f}", f"{single:,.0f}", ""],
    ]
    per_core = ours / cores
    met = ours / base >= 1.5
    text = (f"### 9. Training input — decode + augment per CPU core\n\n`python benchmarks/decode.py` — {args.images:,} "
            f"JPEGs (ImageNet-like sizes, {kb:.0f} kB on average), RandomResizedCrop(224, scale (0.1, 1), ratio "
            f"(0.8, 1.25)) + flip to uint8 tensors, batches of 64, every one of the machine's {cores} cores; rates "
            f"from the first batch on (the start-up of workers or of Ray Data's executor is left out).\n\n"
            + table(["input pipeline", "images/s", "images/s per core", "vs baseline"], rows)
            + f"\n\nTarget: ≥ 1.5x the baseline per core — {'met' if met else 'NOT met'} ({ours / base:.2f}x). "
            f"To feed 3,000 images/s (about one A100 training ResNet-50 in bf16) takes {3000 / per_core:.0f} such "
            f"cores per GPU (the stream's rate per core here; decode alone: {3000 / single:.0f} cores).\n\n"
            f"Data wait at a 200 ms step (a GPU step: the host sleeps, the cores decode; 64 images per step = 320 "
            f"images/s needed), one epoch: {wait[0]:.1%} of the loop's time after its first 5 steps — target < 5% "
            f"{'met' if wait[0] < 0.05 else 'NOT met'}; {wait[1]:.1%} over the whole epoch, whose first batch waits "
            f"for Ray Data's executor to start and the first window to be read (once per epoch: "
            f"{args.images // 64} steps here, 20,000 on ImageNet).")
    publish("decode", text, print_only=args.no_write)


if __name__ == "__main__":
    main()
