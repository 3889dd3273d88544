"""Seeded synthetic uint8 images in the real tensor layout, as a raysweep dataset by import path
(`data.name = "synthetic:images"`, `data.kwargs = {n = 50000, size = 224, classes = 1000}`): what the
GPU benchmarks evaluate on a machine that cannot download ImageNet or CIFAR-10. Speed does not depend
on the pixels; the layout (N, 3, size, size) uint8 with ImageNet's mean/std is the one the real
loaders produce."""
from __future__ import annotations

import torch

from raysweep.data import IMAGENET_MEAN, IMAGENET_STD, Splits


def images(root: str, n: int = 50_000, size: int = 224, classes: int = 1000, train: int = 0) -> Splits:
    g = torch.Generator().manual_seed(0)
    distinct = min(n, 1024)  # drawing 7.5 GB of random bytes takes a minute; 1,024 images tiled take seconds
    x = torch.randint(0, 256, (distinct, 3, size, size), dtype=torch.uint8, generator=g)
    x = x.repeat((n + distinct - 1) // distinct, 1, 1, 1)[:n]
    y = torch.randint(0, classes, (n,), generator=g)
    m = train or n
    return Splits(x[:m], y[:m], x, y, classes, mean=IMAGENET_MEAN, std=IMAGENET_STD)
