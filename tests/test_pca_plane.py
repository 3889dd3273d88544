"""The optimisation path's PCA plane (Li, Xu, Taylor, Studer & Goldstein 2018, §7, Fig 9): its directions are
numpy's SVD of the centred checkpoint differences, the path's coordinates plain projections onto them, and
the loss on the plane a plain forward at θ_T + a·d1 + b·d2."""
import copy

import numpy as np
import polars as pl
import pytest
import torch
from conftest import TINY, run_in_process

from raysweep.data.registry import load_splits
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.models import build_model
from raysweep.spec import sweep_hash

RAW = {**copy.deepcopy(TINY), "name": "pcaplane", "replicates": 1,
       "model": {"name": "mlp", "hidden": [8]},
       "train": {"epochs": 3, "batch_size": 100, "lr": 0.1, "momentum": 0.9, "checkpoints": "every_epoch",
                 "steps": [1, 2, 4, 15]},
       "sweeps": [{"name": "pca", "kind": "pca_plane", "alpha": {"start": -1.0, "stop": 0.5, "num": 4},
                   "beta": {"start": -0.5, "stop": 0.5, "num": 3}, "splits": ["train", "test"]}]}


def test_the_pca_plane_is_numpys_svd_and_plain_projections(tmp_path):
    run = run_in_process(RAW, tmp_path / "s")
    m = read_manifests(run.store, run.job, 0)
    steps = sorted(m)
    thetas = [load_tensors(run.store, m[s]["path"]) for s in steps]
    params = [n for n, _ in build_model(run.job.model, (32,), 10).named_parameters()]
    flat = lambda t: np.concatenate([t[n].double().numpy().ravel() for n in params])  # noqa: E731
    thetaT = flat(thetas[-1])
    diffs = np.stack([flat(t) - thetaT for t in thetas[:-1]])
    centred = diffs - diffs.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # the reference: numpy's SVD
    plane = load_tensors(run.store, paths.plane(run.dir, 0, "pca", sweep_hash(run.job.sweep("pca"))))
    d = [np.concatenate([plane[f"{k}.{n}"].double().numpy().ravel() for n in params]) for k in ("d1", "d2")]
    scale = np.linalg.norm(diffs[0])  # ‖θ_0 − θ_T‖
    for got, want in zip(d, vt[:2]):
        assert np.linalg.norm(got) == pytest.approx(scale, rel=1e-5)
        assert abs(got @ want) / scale == pytest.approx(1.0, abs=1e-5)  # the same axis (up to its sign)
    assert plane["evr"].tolist() == pytest.approx((s[:2] ** 2 / (s ** 2).sum()).tolist(), rel=1e-6)

    surface = run.table("surface").filter(pl.col("sweep") == "pca")
    path = surface.filter(pl.col("kind") == "path").sort("step")
    for row, theta in zip(path.iter_rows(named=True), thetas):
        a, b = ((flat(theta) - thetaT) @ v / (v @ v) for v in d)  # a plain projection onto orthogonal axes
        assert (row["a"], row["b"]) == pytest.approx((a, b), abs=1e-5)
    axes = surface.filter(pl.col("kind") == "axes").row(0, named=True)
    assert (axes["a"], axes["b"]) == pytest.approx(plane["evr"].tolist(), rel=1e-6)

    data = load_splits(run.job.data)
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    state = {n: t.clone() for n, t in thetas[-1].items()}
    a, b = -1.0, 0.5
    for n in params:
        state[n] = thetas[-1][n] + a * plane[f"d1.{n}"] + b * plane[f"d2.{n}"]
    model.load_state_dict(state)
    model.eval()
    x, y = data.split("test")
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(data.prepare(x)), y).item()
    row = surface.filter(pl.col("kind") == "grid", pl.col("a") == a, pl.col("b") == b, pl.col("split") == "test")
    assert row["loss"][0] == pytest.approx(loss, rel=1e-5)
