"""Loaders read the real on-disk formats (written here in miniature) and fail clearly without them."""
import numpy as np
import pytest
import torch
from datafiles import write_cifar10, write_imagenet, write_mnist
from torchvision import transforms as T

from raysweep.data import DatasetMissing, cifar_augment, dataset_info, load_splits, train_batches
from raysweep.spec import DataSpec


def test_digits_split_is_fixed():
    d = load_splits(DataSpec(name="digits"))
    assert (d.n_train, len(d.test_y)) == (1257, 540)
    assert d.train_x.dtype == torch.float32 and float(d.train_x.max()) == 1.0
    assert torch.bincount(d.test_y).min() >= 52  # stratified: ~30% of each class (174-183 images each)


def test_mnist_idx_files(tmp_path):
    written = write_mnist(tmp_path)
    d = load_splits(DataSpec(name="mnist", root=str(tmp_path)))
    assert d.train_x.shape == (60, 1, 28, 28) and d.train_x.dtype == torch.uint8
    assert np.array_equal(d.test_x[:, 0].numpy(), written["t10k"][0])
    assert np.array_equal(d.train_y.numpy(), written["train"][1])
    # on-the-fly normalisation equals torchvision's ToTensor + Normalize(0.1307, 0.3081)
    from PIL import Image

    ref = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])(Image.fromarray(written["train"][0][3]))
    assert torch.allclose(d.prepare(d.train_x[3:4])[0], ref, atol=1e-6)
    # the same tensors as torchvision's own IDX reader, which the loader no longer imports
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = tmp_path / "MNIST" / "raw"
    assert torch.equal(d.train_x[:, 0], read_image_file(str(raw / "train-images-idx3-ubyte")))
    assert torch.equal(d.test_y, read_label_file(str(raw / "t10k-labels-idx1-ubyte")).long())


def test_mnist_loads_gzipped_idx_without_importing_torchvision(tmp_path):
    import gzip
    import subprocess
    import sys

    written = write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for f in list(raw.iterdir()):
        (raw / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    code = ("import sys; from raysweep.data import load_splits; from raysweep.spec import DataSpec; "
            f"d = load_splits(DataSpec(name='mnist', root={str(tmp_path)!r})); "
            "print(int(d.test_x.sum()), len(d.train_y), 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(int(written["t10k"][0].astype(np.int64).sum())), "60", "False"]


def test_cifar_pickle_batches(tmp_path):
    written = write_cifar10(tmp_path)
    d = load_splits(DataSpec(name="cifar10", root=str(tmp_path)))
    assert d.n_train == 60 and len(d.test_y) == 16 and d.augment == "cifar"
    assert np.array_equal(d.train_x[12:24].reshape(12, -1).numpy(), written["data_batch_2"][0])
    assert d.test_y.tolist() == written["test_batch"][1]


def test_cifar_augmentation_is_a_padded_crop_and_flip():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = cifar_augment(x, torch.Generator().manual_seed(5))
    b = cifar_augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    g = torch.Generator().manual_seed(5)
    dy, dx = torch.randint(0, 9, (64,), generator=g), torch.randint(0, 9, (64,), generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    padded = torch.zeros(64, 3, 40, 40, dtype=torch.uint8)
    padded[:, :, 4:36, 4:36] = x
    for i in (0, 17, 63):
        crop = padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        assert torch.equal(a[i], crop.flip(-1) if flip[i] else crop)
    assert 10 < int(flip.sum()) < 54


def test_imagenet_folders(tmp_path):
    write_imagenet(tmp_path)
    spec = DataSpec(name="imagenet", root=str(tmp_path))
    d = load_splits(spec)
    assert d.test_x.shape == (6, 3, 224, 224) and d.test_x.dtype == torch.uint8 and d.num_classes == 3
    from PIL import Image

    first = sorted((tmp_path / "val" / "n01440764").iterdir())[0]
    ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])(Image.open(first).convert("RGB"))
    assert torch.equal(d.test_x[0], ref)
    x, y = next(iter(train_batches(d, 4, seed=0, epoch=0)))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.uint8 and y.shape == (4,)
    info = dataset_info(spec)
    assert info.sizes == {"train": 9, "test": 6} and info.num_classes == 3
    with pytest.raises(ValueError, match="splits = \\['test'\\]"):
        d.split("train")


@pytest.mark.parametrize("name, fragment", [
    ("imagenet", "never downloaded"),
    ("cifar10", "data_batch_1"),
])
def test_missing_datasets_say_where_and_how(tmp_path, name, fragment):
    with pytest.raises(DatasetMissing, match=fragment) as exc:
        load_splits(DataSpec(name=name, root=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(exc.value) and "data.root" in str(exc.value)


def test_prepare_makes_its_constants_once_and_writes_one_output(tmp_path, monkeypatch):
    """Normalisation is one addcmul into the output (dtype and layout chosen there); the mean/std
    constants are made on the first batch only — later batches create no tensor from host data."""
    write_cifar10(tmp_path)
    d = load_splits(DataSpec(name="cifar10", root=str(tmp_path)))
    x = d.test_x[:4]
    ref = (x.float() / 255 - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)) / torch.tensor(
        (0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    first = d.prepare(x)
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or real(*a, **k))
    for _ in range(3):
        out = d.prepare(x, channels_last=True)
    half = d.prepare(x, dtype=torch.bfloat16)
    assert made == []
    assert torch.allclose(first, ref, atol=1e-6) and torch.equal(out, first)
    assert out.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous(
        memory_format=torch.channels_last)
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), ref, rtol=1e-2, atol=1e-2)
