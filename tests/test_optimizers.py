"""train.optimizer: Adam and AdamW replicates are torch.optim's own updates, and resume bitwise on CPU."""
import copy

import pytest
import torch
from conftest import TINY

from raysweep.data.batches import epoch_order
from raysweep.data.registry import load_splits
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import SpecError, parse_job
from raysweep.train.loop import train_replicate

RAW = {**copy.deepcopy(TINY), "name": "adam", "replicates": 1, "sweeps": [], "model": {"name": "mlp", "hidden": [16]},
       "train": {"epochs": 3, "batch_size": 100, "lr": 0.01, "optimizer": "adam", "betas": [0.8, 0.99],
                 "weight_decay": 0.001, "checkpoints": "every_epoch"}}


def _final(store, job):
    m = read_manifests(store, job, 0)
    return load_tensors(store, m[max(m)]["path"], m[max(m)]["sha256"])


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_an_adam_replicate_is_torch_optims_update(name, cls, tmp_path):
    job = parse_job({**RAW, "train": {**RAW["train"], "optimizer": name}})
    store = Store(str(tmp_path / name))
    train_replicate(job, 0, store)
    data = load_splits(job.data)  # the same training, written plainly
    model = build_model(job.model, data.in_shape, data.num_classes, seed=job.seed)
    opt = cls(model.parameters(), lr=0.01, betas=(0.8, 0.99), weight_decay=0.001)
    torch.manual_seed(job.seed)
    model.train()
    for epoch in range(3):
        order = epoch_order(data.n_train, job.seed, epoch)
        for i in range(0, data.n_train, 100):
            idx = order[i:i + 100]
            loss = torch.nn.functional.cross_entropy(model(data.prepare(data.train_x[idx])), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    got = _final(store, job)
    assert all(torch.equal(got[n], t) for n, t in model.state_dict().items())


def test_an_interrupted_adam_replicate_resumes_bitwise(tmp_path):
    job = parse_job(RAW)
    train_replicate(job, 0, Store(str(tmp_path / "whole")))
    store = Store(str(tmp_path / "cut"))

    def stop(info):
        if info["step"] == 20:  # the end of epoch 2: its resume state (with Adam's moments) is written
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_replicate(job, 0, store, progress=stop)
    train_replicate(job, 0, store)
    whole, cut = _final(Store(str(tmp_path / "whole")), job), _final(store, job)
    assert all(torch.equal(whole[n], cut[n]) for n in whole)


def test_optimizer_settings_are_checked_and_hashed():
    with pytest.raises(SpecError, match="train.momentum is SGD's"):
        parse_job({**RAW, "train": {**RAW["train"], "momentum": 0.9}})
    with pytest.raises(SpecError, match="train.optimizer = 'rmsprop' is not valid"):
        parse_job({**RAW, "train": {**RAW["train"], "optimizer": "rmsprop"}})
    sgd = parse_job({**RAW, "train": {k: v for k, v in RAW["train"].items() if k not in ("optimizer", "betas")}})
    assert len({parse_job(RAW).hash, sgd.hash}) == 2
