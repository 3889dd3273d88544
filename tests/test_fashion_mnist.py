"""Fashion-MNIST: the loader on files written in the distributed format, and F's LeNet-300-100 protocol
on the real 60,000 / 10,000 images (Debian's dataset-fashion-mnist, which scripts/test installs)."""
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_in_process
from datafiles import write_fashion_mnist, write_idx

from raysweep.data import DatasetMissing, load_splits, read_idx
from raysweep.spec import DataSpec

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("gz", [True, False])
def test_loader_reads_torchvision_layout_plain_or_gzipped(tmp_path, gz):
    written = write_fashion_mnist(tmp_path, gz=gz)
    s = load_splits(DataSpec(name="fashion_mnist", root=str(tmp_path)))
    assert s.train_x.shape == (60, 1, 28, 28) and s.train_x.dtype == torch.uint8
    assert np.array_equal(s.train_x[:, 0].numpy(), written["train"][0])
    assert s.test_y.tolist() == written["t10k"][1].tolist()
    assert (s.mean, s.std) == ((0.2860,), (0.3530,))


def test_damaged_idx_files_are_named(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((3, 28, 28), np.uint8), gz=True)
    data = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    import gzip

    (tmp_path / "short").write_bytes(gzip.decompress(data)[:-5])
    with pytest.raises(DatasetMissing, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x01" + b"\x00" * 8)
    with pytest.raises(DatasetMissing, match="magic"):
        read_idx(tmp_path / "bad")


def test_real_fashion_mnist_lenet_two_epochs(tmp_path):
    """F's protocol, shortened to 2 epochs and coarse grids, on the real images. The bound on the test
    error: Fashion-MNIST's published baselines put a linear classifier near 16% error and MLPs near 12%
    (Xiao, Rasul & Vollgraf 2017); 2 epochs of LeNet-300-100 land in between, so 20% fails only a broken
    pipeline (shuffled labels, wrong normalisation: ~90%)."""
    assert (DEBIAN / "t10k-labels-idx1-ubyte.gz").exists(), "apt-get install dataset-fashion-mnist (scripts/test does)"
    from raysweep.jobs import builtin_jobs, read_toml

    raw = read_toml(builtin_jobs()["fashion_mnist_lenet_300_100"])  # the job file, shortened
    raw.update(replicates=1, sweeps=[s for s in raw["sweeps"] if s["kind"] in ("init_to_final", "step_to_final")])
    raw["train"]["epochs"] = 2
    raw["data"]["root"] = str(tmp_path)  # nothing there: the Debian package's folder is found
    raw["sweeps"][0]["alpha"]["num"], raw["sweeps"][1]["alpha"]["num"] = 5, 3
    run = run_in_process(raw, tmp_path / "store")
    ck = run.checkpoints.collect().sort("step")
    assert ck["step"][-1] == 2 * 469 and ck["test_error"][-1] < 0.20
    assert ck["test_loss"][0] > 2.0 > ck["test_loss"][-1]  # training worked on real images
    i1 = run.curves.filter(pl.col("sweep") == "init_to_final").sort("alpha").collect()
    assert i1["loss_mean"][0] == pytest.approx(ck["test_loss"][0], rel=1e-5)
    assert i1["loss_mean"][-1] == pytest.approx(ck["test_loss"][-1], rel=1e-5)
    # the evaluator against a float64 plain loop on the real test images, half-way along I1
    from raysweep.io.checkpoints import load_tensors
    from raysweep.models import build_model

    item = run.plan()[0]
    sa, sb = (load_tensors(run.store, e.path, e.sha256) for e in (item.a, item.b))
    data = load_splits(run.job.data)
    model = build_model(run.job.model, data.in_shape, 10).double()
    model.load_state_dict({k: 0.5 * sa[k].double() + 0.5 * sb[k].double() for k in sa})
    x = (data.test_x.double() / 255 - 0.2860) / 0.3530
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(x), data.test_y).item()
    assert i1.filter(pl.col("alpha") == 0.5)["loss_mean"][0] == pytest.approx(want, rel=1e-5)
