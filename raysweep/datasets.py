"""DATASETS registry: name -> loader(DataSpec) -> Splits.

Evaluation runs on whole splits, decoded once into tensors (uint8 for images, normalised on the
fly by ``Splits.prepare`` on the device) and kept by the evaluator. Training draws batches from a
per-(seed, epoch) permutation, so data order is a pure function of the replicate seed and the
epoch — which is what makes resumed training bitwise identical. Real datasets are read from their
standard on-disk formats under ``data.root`` (or ``$RAYSWEEP_DATA``, else ``./data``).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from raysweep.spec import DataSpec


class DatasetMissing(FileNotFoundError):
    """A dataset that is not where raysweep looked; the message says where and how to get it."""


@dataclass
class Splits:
    train_x: torch.Tensor | None  # None for datasets streamed from disk (ImageNet)
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None  # uint8 images: x/255, then (x − mean)/std per channel
    std: tuple[float, ...] | None = None
    augment: str = ""  # "" | "cifar" (random crop 32, padding 4, horizontal flip)
    stream: Callable[..., Iterator] | None = None  # (batch_size, seed, epoch, skip, workers) -> batches
    image_shape: tuple[int, ...] | None = None
    origin: str = ""  # for split-cached datasets: "cache" (read from the store) or "decoded" (then cached)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.image_shape or tuple(self.test_x.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "test":
            return self.test_x, self.test_y
        if name == "train":
            if self.train_x is None:
                raise ValueError("this dataset's training split is streamed from disk and is not evaluated whole; "
                                 "use splits = ['test'] for its sweeps")
            return self.train_x, self.train_y
        raise KeyError(f"unknown split {name!r}; splits are 'train' and 'test'")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Model input from stored data: uint8 -> float in [0, 1] -> normalised (on x's device)."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        if self.mean is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            mean = torch.tensor(self.mean, device=x.device).view(shape)
            std = torch.tensor(self.std, device=x.device).view(shape)
            x = (x - mean) / std
        return x


# ------------------------------------------------------------------------ offline datasets


def digits(spec: DataSpec) -> Splits:
    """scikit-learn's 8x8 digits (1,797 images, ships in the wheel), scaled to [0, 1].

    A fixed stratified split: 30% test (540 images), 1,257 train, independent of any seed.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return _splits(xtr, ytr, xte, yte, 10)


def blobs(spec: DataSpec) -> Splits:
    """Seeded synthetic data: 10 Gaussian clusters in 32 dimensions, 1,000 train / 500 test."""
    rng = np.random.default_rng(1234)
    centres = rng.normal(0.0, 1.0, size=(10, 32))

    def draw(n):
        y = rng.integers(0, 10, size=n)
        return (centres[y] + rng.normal(0.0, 1.5, size=(n, 32))).astype(np.float32), y
    (xtr, ytr), (xte, yte) = draw(1000), draw(500)
    return _splits(xtr, ytr, xte, yte, 10)


def linreg(spec: DataSpec) -> Splits:
    """G's deep linear regression data: scalar x ~ N(0, 1), y = x; 1,000 train / 500 test (seeded).
    Real-valued targets make the loss the squared error (the error rate is NaN)."""
    rng = np.random.default_rng(7)
    xtr, xte = rng.normal(size=(1000, 1)).astype(np.float32), rng.normal(size=(500, 1)).astype(np.float32)
    t = torch.from_numpy
    return Splits(t(xtr), t(xtr[:, 0].copy()), t(xte), t(xte[:, 0].copy()), 1)


def _splits(xtr, ytr, xte, yte, num_classes, **kw) -> Splits:
    t = torch.from_numpy
    return Splits(t(np.ascontiguousarray(xtr)), t(np.asarray(ytr).astype(np.int64)),
                  t(np.ascontiguousarray(xte)), t(np.asarray(yte).astype(np.int64)), num_classes, **kw)


# ------------------------------------------------------------------------ real datasets


def data_root(spec: DataSpec) -> Path:
    return Path(spec.root or os.environ.get("RAYSWEEP_DATA") or "./data").expanduser()


def mnist(spec: DataSpec) -> Splits:
    """MNIST in torchvision's layout: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.
    Downloaded by torchvision when missing and the machine can reach the internet."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    root = data_root(spec)
    raw = root / "MNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if not all((raw / n).exists() for n in names):
        _download(lambda: __import__("torchvision").datasets.MNIST(str(root), download=True), "MNIST", raw,
                  "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                  "t10k-labels-idx1-ubyte")
    xtr, ytr = read_image_file(str(raw / names[0])), read_label_file(str(raw / names[1]))
    xte, yte = read_image_file(str(raw / names[2])), read_label_file(str(raw / names[3]))
    # OpenLTH: ToTensor + Normalize(0.1307, 0.3081), no augmentation
    return Splits(xtr.unsqueeze(1), ytr.long(), xte.unsqueeze(1), yte.long(), 10, mean=(0.1307,), std=(0.3081,))


def cifar10(spec: DataSpec) -> Splits:
    """CIFAR-10 python batches: <root>/cifar-10-batches-py/{data_batch_1..5,test_batch}."""
    import pickle  # the dataset's own format (not used for checkpoints)

    root = data_root(spec)
    folder = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / f).exists() for f in files):
        _download(lambda: __import__("torchvision").datasets.CIFAR10(str(root), download=True), "CIFAR-10", folder,
                  "data_batch_1 … data_batch_5 and test_batch from cifar-10-python.tar.gz")

    def read(names):
        xs, ys = [], []
        for n in names:
            with open(folder / n, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d["labels"], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)
    (xtr, ytr), (xte, yte) = read(files[:5]), read(files[5:])
    # OpenLTH's CIFAR-10 normalisation; augmentation: random crop 32 with padding 4 + flip
    return _splits(xtr, ytr, xte, yte, 10, mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),
                   augment="cifar")


def _download(fetch: Callable, name: str, where: Path, what: str) -> None:
    try:
        fetch()
    except Exception as exc:  # no network, a proxy, a checksum: all mean the same to the user
        raise DatasetMissing(
            f"{name} is not at {where} and could not be downloaded ({type(exc).__name__}: {exc}). Put {what} "
            f"there, or point raysweep at the folder that holds them with --set data.root=PATH or "
            f"$RAYSWEEP_DATA.") from None


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _imagenet_folders(spec: DataSpec) -> tuple[Path, Path]:
    root = data_root(spec)
    train, val = root / "train", root / "val"
    if not (train.is_dir() and val.is_dir()):
        raise DatasetMissing(
            f"ImageNet is not at {root}: raysweep looks for {train} and {val}, each with one folder per class "
            f"(n01440764/, …) of JPEGs, the ImageFolder layout. ImageNet is never downloaded: get ILSVRC2012 "
            f"from image-net.org, arrange val/ into class folders, and pass --set data.root=PATH or $RAYSWEEP_DATA.")
    return train, val


def imagenet(spec: DataSpec, cache: "SplitCache | None" = None) -> Splits:
    """ImageNet as ImageFolders <root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG.

    The validation split is decoded once (Resize 256, CenterCrop 224) into a uint8 tensor, and kept
    in the store's split cache when one is given, so each further process reads one file instead of
    decoding 50,000 JPEGs. Training streams RandomResizedCrop(224, scale (0.1, 1), ratio (0.8, 1.25))
    + flip through DataLoader workers.
    """
    from torchvision import datasets as tvd
    from torchvision import transforms as T

    train_dir, val_dir = _imagenet_folders(spec)
    test_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    train_tf = T.Compose([T.RandomResizedCrop(224, scale=(0.1, 1.0), ratio=(0.8, 1.25)),
                          T.RandomHorizontalFlip(), T.PILToTensor()])
    train_set = tvd.ImageFolder(str(train_dir), transform=train_tf)
    val_set = tvd.ImageFolder(str(val_dir), transform=test_tf)
    if val_set.classes != train_set.classes:
        raise DatasetMissing(f"ImageNet at {data_root(spec)}: val/ has {len(val_set.classes)} class folders and "
                             f"train/ {len(train_set.classes)}, or their names differ; both need the same classes.")

    def decode():
        loader = torch.utils.data.DataLoader(val_set, batch_size=256, num_workers=spec.num_workers)
        xs, ys = zip(*loader) if len(val_set) else ((), ())
        return torch.cat(xs), torch.cat(ys)

    identity = [("resize256-crop224", 1)] + [(os.path.relpath(p, val_dir), os.path.getsize(p)) for p, _ in val_set.samples]
    test_x, test_y = cache.get("imagenet", "val", identity, decode) if cache else decode()
    origin = cache.last_source if cache else "decoded"

    def stream(batch_size, seed, epoch, skip, workers):
        order = epoch_order(len(train_set), seed, epoch)[skip * batch_size:].tolist()
        g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
        yield from torch.utils.data.DataLoader(train_set, batch_size=batch_size, sampler=order, generator=g,
                                               num_workers=workers or spec.num_workers, pin_memory=torch.cuda.is_available(),
                                               persistent_workers=False)

    return Splits(None, torch.tensor(train_set.targets), test_x, test_y, len(train_set.classes),
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, stream=stream, image_shape=(3, 224, 224), origin=origin)


class SplitCache:
    """Decoded evaluation splits kept in the Store (``cache/<dataset>-<fingerprint>/<split>``) as
    uint8 safetensors with a sha256, so a cluster decodes a dataset once, not once per GPU actor.

    The fingerprint covers every file of the split (relative path and size) and the transform, so a
    changed dataset is decoded anew. A damaged cache file is decoded again and rewritten."""

    def __init__(self, store):
        self.store = store
        self.last_source = ""  # "cache" or "decoded": what the last get() did (tests, logs)

    def get(self, dataset: str, split: str, identity: list, decode: Callable[[], tuple[torch.Tensor, torch.Tensor]]):
        import hashlib
        import json

        from raysweep import paths
        from raysweep.checkpoints import CheckpointError, load_tensors, save_tensors

        key = hashlib.sha256(json.dumps(sorted(identity)).encode()).hexdigest()[:16]
        path = paths.split_cache(dataset, key, split)
        meta = path.replace(".safetensors", ".json")
        if self.store.exists(meta):
            try:
                t = load_tensors(self.store, path, self.store.read_json(meta)["sha256"])
                self.last_source = "cache"
                return t["x"], t["y"]
            except (CheckpointError, KeyError, ValueError) as exc:
                import logging

                logging.getLogger("raysweep").warning("split cache %s is unusable (%s); decoding again",
                                                      self.store.url(path), exc)
        x, y = decode()
        sha = save_tensors(self.store, path, {"x": x, "y": y})
        self.store.write_json(meta, {"dataset": dataset, "split": split, "sha256": sha, "n": len(y),
                                     "shape": list(x.shape), "dtype": str(x.dtype)})
        self.last_source = "decoded"
        return x, y


@dataclass(frozen=True)
class DatasetInfo:
    in_shape: tuple[int, ...]
    num_classes: int
    sizes: dict  # split -> number of examples


def imagenet_info(spec: DataSpec) -> DatasetInfo:
    train, val = _imagenet_folders(spec)
    classes = [c for c in train.iterdir() if c.is_dir()]
    count = lambda d: sum(len(os.listdir(c)) for c in d.iterdir() if c.is_dir())  # noqa: E731
    return DatasetInfo((3, 224, 224), len(classes), {"train": count(train), "test": count(val)})


DATASETS: dict[str, Callable[[DataSpec], Splits]] = {"digits": digits, "blobs": blobs, "mnist": mnist,
                                                     "cifar10": cifar10, "imagenet": imagenet, "linreg": linreg}
# Datasets too big to load just to describe them say what they are here.
INFOS: dict[str, Callable[[DataSpec], DatasetInfo]] = {"imagenet": imagenet_info}


# Datasets whose evaluation split is expensive to decode: kept decoded in the store's split cache.
CACHED_SPLITS = {"imagenet"}


@functools.lru_cache(maxsize=2)
def load_splits(spec: DataSpec, store=None) -> Splits:
    """The dataset's splits (cached: one process decodes a dataset once; with a Store, datasets in
    CACHED_SPLITS also read and fill the store's split cache, so a cluster decodes them once)."""
    if spec.name not in DATASETS:
        raise KeyError(f"unknown dataset {spec.name!r}; registered datasets are {sorted(DATASETS)}")
    if spec.name in CACHED_SPLITS and store is not None:
        return DATASETS[spec.name](spec, cache=SplitCache(store))
    return DATASETS[spec.name](spec)


# ------------------------------------------------------------------------ training batches


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a permutation seeded by (replicate seed, epoch)."""
    g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
    return torch.randperm(n, generator=g)


def cifar_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of the zero-padded (4 px) image and a random horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (n,), generator=g), torch.randint(0, 9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def train_batches(splits: Splits, batch_size: int, seed: int, epoch: int, skip: int = 0, workers: int = 0
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of one epoch (the last one partial), starting after `skip` batches; stored dtype."""
    if splits.stream is not None:
        yield from splits.stream(batch_size, seed, epoch, skip, workers)
        return
    order = epoch_order(splits.n_train, seed, epoch)
    for b, start in enumerate(range(skip * batch_size, len(order), batch_size), start=skip):
        idx = order[start:start + batch_size]
        x = splits.train_x[idx]
        if splits.augment == "cifar":
            x = cifar_augment(x, torch.Generator().manual_seed(1_000_003 * seed + 7_919 * epoch + b))
        yield x, splits.train_y[idx]


# What each dataset is when it is not on this machine (for plans and cost estimates).
STANDARD = {
    "digits": DatasetInfo((1, 8, 8), 10, {"train": 1257, "test": 540}),
    "blobs": DatasetInfo((32,), 10, {"train": 1000, "test": 500}),
    "linreg": DatasetInfo((1,), 1, {"train": 1000, "test": 500}),
    "mnist": DatasetInfo((1, 28, 28), 10, {"train": 60_000, "test": 10_000}),
    "cifar10": DatasetInfo((3, 32, 32), 10, {"train": 50_000, "test": 10_000}),
    "imagenet": DatasetInfo((3, 224, 224), 1000, {"train": 1_281_167, "test": 50_000}),
}


def dataset_info(spec: DataSpec, standard_if_missing: bool = False) -> DatasetInfo:
    """Shape, classes and split sizes, read cheaply from the data (raises DatasetMissing, or gives
    the standard values with standard_if_missing)."""
    try:
        if spec.name in INFOS:
            return INFOS[spec.name](spec)
        d = load_splits(spec)
        return DatasetInfo(d.in_shape, d.num_classes, {"train": d.n_train, "test": len(d.test_y)})
    except DatasetMissing:
        if standard_if_missing:
            return STANDARD[spec.name]
        raise
