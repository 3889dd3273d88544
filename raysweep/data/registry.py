"""DATASETS registry: name -> loader(DataSpec) -> Splits.

Evaluation runs on whole splits, decoded once into tensors (uint8 for images, normalised on the
fly by ``Splits.prepare`` on the device) and kept by the evaluator. Training draws batches from a
per-(seed, epoch) permutation, so data order is a pure function of the replicate seed and the
epoch — which is what makes resumed training bitwise identical. Real datasets are read from their
standard on-disk formats under ``data.root`` (or ``$RAYSWEEP_DATA``, else ``./data``).
"""
from __future__ import annotations

import functools
from typing import Callable

from raysweep.data.cache import SplitCache
from raysweep.data.images import (
    cifar10,
    data_root,
    fashion_mnist,
    imagenet,
    imagenet_info,
    mnist,
)
from raysweep.data.offline import blobs, digits, digits_shifted, linreg, standin
from raysweep.data.streams import packed_info, packed_splits
from raysweep.data.text import pydoc, text
from raysweep.data.types import DatasetInfo, DatasetMissing, Splits
from raysweep.errors import SpecError
from raysweep.plugins import Registry, load_object
from raysweep.spec import DataSpec, is_import_path

# name -> loader(DataSpec) -> Splits; yours: @register_dataset("mydata") in a plugin module
DATASETS = Registry("dataset")
register_dataset = DATASETS.register
for _name, _loader in (("digits", digits), ("digits_shifted", digits_shifted), ("blobs", blobs), ("mnist", mnist),
                       ("fashion_mnist", fashion_mnist), ("cifar10", cifar10), ("imagenet", imagenet),
                       ("linreg", linreg), ("pydoc", pydoc), ("text", text),
                       ("standin", standin)):  # standin: `raysweep run --rehearse`'s, the real plan on a few examples
    register_dataset(_name)(_loader)


# Datasets too big to load just to describe them say what they are here.
INFOS: dict[str, Callable[[DataSpec], DatasetInfo]] = {"imagenet": imagenet_info}


def _user_splits(spec: DataSpec) -> Splits:
    """A dataset by import path (raysweep.plugins' contract): load(root, **kwargs) -> Splits."""
    splits = load_object(spec.name, "data.name")(str(data_root(spec)), **spec.options())
    if not isinstance(splits, Splits):
        raise SpecError(f"data.name = {spec.name!r} returned a {type(splits).__name__}, not raysweep.data.Splits")
    return splits


# Datasets whose evaluation split is expensive to decode: kept decoded in the store's split cache.
CACHED_SPLITS = {"imagenet", "pydoc", "text"}  # text: tokenized once (data/text.py)


@functools.lru_cache(maxsize=2)
def load_splits(spec: DataSpec, store=None) -> Splits:
    """The dataset's splits (cached: one process decodes a dataset once; with a Store, datasets in
    CACHED_SPLITS also read and fill the store's split cache, so a cluster decodes them once)."""
    if spec.source == "store":  # packed by `raysweep data pack`, streamed by Ray Data
        return packed_splits(spec, store, SplitCache(store) if store is not None else None)
    if is_import_path(spec.name):
        return _user_splits(spec)
    DATASETS.lookup(spec.name, "data.name")
    if spec.name in CACHED_SPLITS and store is not None:
        splits = DATASETS[spec.name](spec, cache=SplitCache(store))
    else:
        splits = DATASETS[spec.name](spec)
    if spec.pixels == "unit":
        import dataclasses

        splits = dataclasses.replace(splits, mean=None, std=None)
    return splits


# What each dataset is when it is not on this machine (for plans and cost estimates).
STANDARD = {
    "digits": DatasetInfo((1, 8, 8), 10, {"train": 1257, "test": 540}),
    "digits_shifted": DatasetInfo((1, 8, 8), 10, {"train": 1257, "test": 540, "test_clean": 540}),
    "blobs": DatasetInfo((32,), 10, {"train": 1000, "test": 500}),
    "linreg": DatasetInfo((1,), 1, {"train": 1000, "test": 500}),
    "mnist": DatasetInfo((1, 28, 28), 10, {"train": 60_000, "test": 10_000}),
    "fashion_mnist": DatasetInfo((1, 28, 28), 10, {"train": 60_000, "test": 10_000}),
    "cifar10": DatasetInfo((3, 32, 32), 10, {"train": 50_000, "test": 10_000}),
    "imagenet": DatasetInfo((3, 224, 224), 1000, {"train": 1_281_167, "test": 50_000}),
}


def dataset_info(spec: DataSpec, standard_if_missing: bool = False, store=None) -> DatasetInfo:
    """Shape, classes and split sizes, read cheaply from the data (raises DatasetMissing, or gives
    the standard values with standard_if_missing). A packed dataset is described by its manifest in
    `store`."""
    try:
        if spec.source == "store":
            return packed_info(spec, store)
        if spec.name in INFOS:
            return INFOS[spec.name](spec)
        d = load_splits(spec)
        return DatasetInfo(d.in_shape, d.num_classes, {"train": d.n_train, "test": len(d.test_y),
                                                        **{k: len(v[1]) for k, v in d.extra.items()},
                                                        **{k: 0 for k in d.harness}})  # lm-eval's: counted there
    except DatasetMissing:
        if standard_if_missing and spec.name in STANDARD:
            return STANDARD[spec.name]
        raise
