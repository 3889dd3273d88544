"""Data-parallel replicates: 2 gloo ranks on Ray Train give the single-process run's weights; micro-
batches give the whole batch's update; the rank split of an epoch covers it exactly once."""
import copy

import pytest
import torch

from raysweep.data.batches import train_batches
from raysweep.data.registry import load_splits
from raysweep.evaluate.losses import loss_fn
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.spec import parse_job
from raysweep.train.loop import setup, sgd_step, train_replicate
from raysweep.train.parallel import Meter

from conftest import TINY

RAW = {**copy.deepcopy(TINY), "name": "ddp", "replicates": 1, "sweeps": [],
       "model": {"name": "mlp", "hidden": [16]},  # no BatchNorm: ranks see the same statistics
       "train": {"epochs": 10, "batch_size": 50, "lr": 0.05, "momentum": 0.5, "checkpoints": "list", "steps": [0, 50]}}


def test_micro_batches_make_the_same_update_as_the_whole_batch():
    job = parse_job({**RAW, "train": {**RAW["train"], "batch_size": 1000}})
    data = load_splits(job.data)
    x, y = next(iter(train_batches(data, 1000, 0, 0)))
    device = torch.device("cpu")
    models = []
    for micro in (0, 250):  # one batch of 1,000, then 4 micro-batches of 250
        model, opt = setup(job, data, device, seed=3)
        for it in range(3):
            sgd_step(job, data, model, opt, x, y, it, 1, device, loss_fn("auto"), micro=micro)
        models.append(model.state_dict())
    for name, whole in models[0].items():
        assert torch.allclose(models[1][name], whole, rtol=1e-6, atol=1e-7), name


def test_ranks_split_every_batch_of_an_epoch_exactly_once():
    job = parse_job(RAW)
    data = load_splits(job.data)
    whole = [y for _, y in train_batches(data, 100, 5, 2)]
    parts = [[y for _, y in train_batches(data, 100, 5, 2, 0, 0, r, 3)] for r in range(3)]
    assert all(len(p) == len(whole) for p in parts)
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([p[i] for p in parts]), batch)


def test_two_gloo_ranks_on_ray_train_equal_one_process(tmp_path, ray_session):
    from raysweep.run.core import Run

    single = parse_job(RAW)
    train_replicate(single, 0, Store(str(tmp_path / "one")))
    ddp = Run(parse_job({**RAW, "resources": {"workers_per_trial": 2}}), Store(str(tmp_path / "two")))
    assert ddp.job.hash != single.hash  # the world size is part of the run
    assert ddp.train(progress=False) == [0]
    ones, twos = (read_manifests(s, j, 0) for s, j in ((Store(str(tmp_path / "one")), single), (ddp.store, ddp.job)))
    assert sorted(ones) == sorted(twos) == [0, 50, 200]
    assert twos[200]["workers"] == 2 and twos[200]["micro_batch"] == 25 and twos[200]["images_per_s"] > 0
    a = load_tensors(Store(str(tmp_path / "one")), ones[200]["path"], ones[200]["sha256"])
    b = load_tensors(ddp.store, twos[200]["path"], twos[200]["sha256"])
    for name in a:
        rel = ((a[name] - b[name]).abs().max() / a[name].abs().max()).item()
        assert rel <= 1e-6, (name, rel)
    assert ddp.store.exists(paths.train_done(ddp.dir, 0))
