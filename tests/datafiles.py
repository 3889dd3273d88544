"""Tiny datasets written in the real on-disk formats: MNIST IDX, CIFAR-10 pickle batches, ImageFolder."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_mnist(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + y.tobytes())
        out[prefix] = (x, y)
    return out


def write_cifar10(root: Path, per_batch: int = 12, n_test: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        out[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return out


def write_imagenet(root: Path, classes=("n01440764", "n01443537", "n01484850"), train_per_class: int = 3,
                   val_per_class: int = 2, size=(40, 48), seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in classes:
            d = Path(root) / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{c}_{i}.JPEG", quality=90)
    return Path(root)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """An IDX file as MNIST and Fashion-MNIST ship them: big-endian magic 0x0000 08 <ndim>, dims, uint8."""
    import gzip

    data = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape) + array.tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if gz else open)(str(path), "wb").write(data)


def write_fashion_mnist(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0, gz: bool = True) -> dict:
    """Fashion-MNIST in torchvision's layout, <root>/FashionMNIST/raw/, gzipped as distributed."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "FashionMNIST" / "raw"
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
        out[prefix] = (x, y)
    return out


def write_image_folder(root: Path, classes=("cat", "dog", "eel"), train_per_class: int = 7, val_per_class: int = 3,
                       seed: int = 0) -> Path:
    """An ImageFolder tree of real encoded images as ImageNet has them: JPEGs of varied sizes, one of
    them grayscale and one CMYK, and a PNG; class-coloured so a net can learn them."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = {c: rng.integers(40, 216, size=3) for c in classes}
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for ci, c in enumerate(classes):
            d = Path(root) / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(24, 80)), int(rng.integers(24, 80))
                pixels = np.clip(colours[c] + rng.normal(0, 25, size=(h, w, 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(pixels)
                if split == "train" and ci == 0 and i == 0:
                    img.convert("L").save(d / f"{c}_{i}.JPEG", quality=90)  # grayscale
                elif split == "train" and ci == 1 and i == 0:
                    img.convert("CMYK").save(d / f"{c}_{i}.JPEG", quality=90)  # CMYK, as a few ImageNet files
                elif split == "train" and ci == 2 and i == 0:
                    img.save(d / f"{c}_{i}.png")
                else:
                    img.save(d / f"{c}_{i}.JPEG", quality=90)
    return Path(root)


def write_digits_folder(root: Path, size: int = 16, test_share: float = 0.2, seed: int = 0) -> Path:
    """scikit-learn's digits (1,797 real 8×8 scans, 10 classes) as an ImageFolder of size × size RGB
    JPEGs, <root>/train/<digit>/<i>.jpg and <root>/val/<digit>/<i>.jpg, split by a seeded permutation.
    Listed, it is class-sorted — as every ImageFolder is."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    n_test = int(len(order) * test_share)
    for pos, i in enumerate(order):
        split = "val" if pos < n_test else "train"
        d = Path(root) / split / str(int(digits.target[i]))
        d.mkdir(parents=True, exist_ok=True)
        gray = Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        gray.convert("RGB").save(d / f"{i:04d}.jpg", quality=95)
    return Path(root)
