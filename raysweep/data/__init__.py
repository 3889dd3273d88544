"""Datasets: the DATASETS registry (registry), dataset shapes and splits (types), offline data (offline), real
formats (images), text for language models (text) and its multiple-choice tasks (tasks), the store's split cache
(cache), training batches (batches), packed datasets in the store (packed), their Ray Data streams (streams)
with their stall watch (watch), a pack's class mix (mix), and the train_subset split's examples (subset)."""
from raysweep.data.batches import cifar_augment, epoch_order, train_batches
from raysweep.data.cache import SplitCache
from raysweep.data.images import (
                                  IMAGENET_MEAN,
                                  IMAGENET_STD,
                                  cifar10,
                                  data_root,
                                  fashion_mnist,
                                  imagenet,
                                  imagenet_info,
                                  mnist,
                                  read_idx,
)
from raysweep.data.offline import blobs, digits, linreg
from raysweep.data.registry import (
                                  CACHED_SPLITS,
                                  DATASETS,
                                  INFOS,
                                  STANDARD,
                                  dataset_info,
                                  load_splits,
)
from raysweep.data.types import DatasetInfo, DatasetMissing, Splits

__all__ = [
    "CACHED_SPLITS",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INFOS",
    "STANDARD",
    "DatasetInfo",
    "DatasetMissing",
    "SplitCache",
    "Splits",
    "blobs",
    "cifar10",
    "cifar_augment",
    "data_root",
    "dataset_info",
    "digits",
    "epoch_order",
    "fashion_mnist",
    "read_idx",
    "imagenet",
    "imagenet_info",
    "linreg",
    "load_splits",
    "mnist",
    "train_batches",
]
