"""Real datasets in their standard on-disk formats under ``data.root`` (or ``$RAYSWEEP_DATA``, else
``./data``): MNIST IDX (torchvision's layout), CIFAR-10 python batches, ImageNet ImageFolders."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from raysweep.data.batches import epoch_order
from raysweep.data.cache import SplitCache
from raysweep.data.subset import subset_indices
from raysweep.data.types import DatasetInfo, DatasetMissing, Splits, _splits
from raysweep.spec import DataSpec


def data_root(spec: DataSpec) -> Path:
    return Path(spec.root or os.environ.get("RAYSWEEP_DATA") or "./data").expanduser()


def mnist(spec: DataSpec) -> Splits:
    """MNIST in torchvision's layout: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    (plain or .gz), read with our IDX reader (no torchvision import: 1.5 s less per evaluator actor).
    Downloaded by torchvision when missing and the machine can reach the internet."""
    root = data_root(spec)
    raw = root / "MNIST" / "raw"
    found = _idx_folder(raw)
    if found is None:
        _download(lambda: __import__("torchvision").datasets.MNIST(str(root), download=True), "MNIST", raw,
                  f"the four IDX files ({', '.join(IDX_NAMES)}, plain or .gz)")
        found = _idx_folder(raw)
        if found is None:
            raise DatasetMissing(f"MNIST's download left no IDX files in {raw}; put them there by hand")
    folder, suffix = found
    xtr, ytr, xte, yte = (read_idx(folder / f"{n}{suffix}") for n in IDX_NAMES)
    # OpenLTH: ToTensor + Normalize(0.1307, 0.3081), no augmentation
    return Splits(xtr.unsqueeze(1), ytr.long(), xte.unsqueeze(1), yte.long(), 10, mean=(0.1307,), std=(0.3081,))


# torchvision's ImageNet statistics; OpenLTH uses them for CIFAR-10 too
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # `apt-get install dataset-fashion-mnist`


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (MNIST's format: big-endian magic, dims, then uint8 data), plain or gzipped."""
    import gzip

    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetMissing(f"{path} is not a uint8 IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetMissing(f"{path} is truncated: {body.size} bytes for dimensions {dims}")
    return torch.from_numpy(body.reshape(dims).copy())


def _idx_folder(*folders: Path) -> tuple[Path, str] | None:
    """The first folder holding the four IDX files, plain or .gz, and the suffix they have."""
    for folder in folders:
        for suffix in ("", ".gz"):
            if all((folder / f"{n}{suffix}").exists() for n in IDX_NAMES):
                return folder, suffix
    return None


def fashion_mnist(spec: DataSpec) -> Splits:
    """Fashion-MNIST (60,000 / 10,000 28x28 images, 10 classes) in torchvision's layout,
    <root>/FashionMNIST/raw/ (IDX files, plain or .gz); else Debian's package folder
    /usr/share/datasets/fashion-mnist/; else downloaded by torchvision when online."""
    root = data_root(spec)
    raw = root / "FashionMNIST" / "raw"
    found = _idx_folder(raw, DEBIAN_FASHION)
    if found is None:
        _download(lambda: __import__("torchvision").datasets.FashionMNIST(str(root), download=True), "Fashion-MNIST",
                  raw, f"the four IDX files ({', '.join(IDX_NAMES)}, plain or .gz), or run `apt-get install "
                  f"dataset-fashion-mnist` (Debian)")
        found = _idx_folder(raw)
    folder, suffix = found
    xtr, ytr, xte, yte = (read_idx(folder / f"{n}{suffix}") for n in IDX_NAMES)
    # F's MNIST protocol, unchanged but for the normalisation: Fashion-MNIST's own pixel mean and std
    # (0.2860, 0.3530 over the training set), as OpenLTH uses MNIST's for MNIST. No augmentation.
    return Splits(xtr.unsqueeze(1), ytr.long(), xte.unsqueeze(1), yte.long(), 10, mean=(0.2860,), std=(0.3530,))


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
    # OpenLTH's datasets/cifar10.py normalises CIFAR-10 with ImageNet's mean/std (not CIFAR's own);
    # augmentation: random crop 32 with padding 4 + flip
    return _splits(xtr, ytr, xte, yte, 10, mean=IMAGENET_MEAN, std=IMAGENET_STD, augment="cifar")


def _download(fetch: Callable, name: str, where: Path, what: str) -> None:
    try:
        fetch()
    except Exception as exc:  # no network, a proxy, a checksum: all mean the same to the user
        raise DatasetMissing(
            f"{name} is not at {where} and could not be downloaded ({type(exc).__name__}: {exc}). Put {what} "
            f"there, or point raysweep at the folder that holds them with --set data.root=PATH or "
            f"$RAYSWEEP_DATA.") from None




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

    identity = [("resize256-crop224", 1)] + [
        (os.path.relpath(p, val_dir), os.path.getsize(p)) for p, _ in val_set.samples
    ]
    test_x, test_y = cache.get("imagenet", "val", identity, decode) if cache else decode()
    origin = cache.last_source if cache else "decoded"

    def stream(batch_size, seed, epoch, skip, workers, rank=0, world=1):
        m = len(train_set) // world  # rank r: positions [r·m, (r+1)·m) of the epoch's order
        order = epoch_order(len(train_set), seed, epoch)[rank * m:(rank + 1) * m][skip * batch_size:].tolist()
        g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
        yield from torch.utils.data.DataLoader(
            train_set,
            batch_size=batch_size,
            sampler=order,
            generator=g,
            num_workers=workers or spec.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    def train_rows(n: int):  # the train_subset split: n training images in the evaluation view
        chosen = [train_set.samples[i] for i in subset_indices(len(train_set), n).tolist()]
        identity = [("resize256-crop224", 1), ("train_subset", n)] + [
            (os.path.relpath(p, train_dir), os.path.getsize(p)) for p, _ in chosen]
        decode_chosen = lambda: decode_files(chosen, test_tf, (3, 224, 224), spec.num_workers)  # noqa: E731
        return (cache.get("imagenet", f"train_subset-{n}", identity, decode_chosen) if cache
                else decode_chosen())

    return Splits(None, torch.tensor(train_set.targets), test_x, test_y, len(train_set.classes),
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, stream=stream, image_shape=(3, 224, 224), origin=origin,
                  train_rows=train_rows)


class _Files(torch.utils.data.Dataset):
    def __init__(self, samples: list, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        return self.transform(default_loader(path)), label


def decode_files(samples: list, transform, shape: tuple, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(path, label) image files through `transform` into one preallocated uint8 tensor (no second copy)."""
    x = torch.empty((len(samples), *shape), dtype=torch.uint8)
    y = torch.tensor([label for _, label in samples], dtype=torch.int64)
    at = 0
    for batch, _ in torch.utils.data.DataLoader(_Files(samples, transform), batch_size=256, num_workers=workers):
        x[at:at + len(batch)] = batch
        at += len(batch)
    return x, y


def imagenet_info(spec: DataSpec) -> DatasetInfo:
    train, val = _imagenet_folders(spec)
    classes = [c for c in train.iterdir() if c.is_dir()]
    count = lambda d: sum(len(os.listdir(c)) for c in d.iterdir() if c.is_dir())  # noqa: E731
    return DatasetInfo((3, 224, 224), len(classes), {"train": count(train), "test": count(val)})
