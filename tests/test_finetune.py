"""Fine-tuning replicates: every replicate starts from one pretrained checkpoint (train.init_from, in the run
hash by content), with parameters frozen by glob (train.freeze)."""
import copy

import pytest
import torch
from conftest import TINY

from raysweep.errors import SpecError
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.jobs import job_from_dict
from raysweep.spec import parse_job
from raysweep.train.loop import train_replicate

BASE = {**copy.deepcopy(TINY), "name": "pre", "replicates": 1, "sweeps": [], "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 100, "lr": 0.1, "checkpoints": "every_epoch"}}


def _states(store, job, k):
    m = read_manifests(store, job, k)
    return {s: load_tensors(store, e["path"], e["sha256"]) for s, e in sorted(m.items())}


def test_fine_tunes_start_from_the_pretrained_weights_and_keep_the_frozen_ones(tmp_path):
    pre = parse_job(BASE)
    train_replicate(pre, 0, Store(str(tmp_path / "pre")))
    pretrained = _states(Store(str(tmp_path / "pre")), pre, 0)[20]
    torch.save({"state_dict": pretrained, "epoch": 2}, tmp_path / "pre.pt")  # a common wrapper, no pickle needed
    raw = {**BASE, "name": "ft", "replicates": 2,
           "train": {**BASE["train"], "init_from": str(tmp_path / "pre.pt"), "freeze": ["1.*"], "lr": 0.05}}
    job = job_from_dict(raw)
    store = Store(str(tmp_path / "ft"))
    for k in (0, 1):
        train_replicate(job, k, store)
    for k in (0, 1):
        states = _states(store, job, k)
        assert all(torch.equal(states[0][n], pretrained[n]) for n in pretrained)  # step 0 is the pretrained model
        assert torch.equal(states[20]["1.weight"], pretrained["1.weight"])  # frozen: untouched, no weight decay
        assert not torch.equal(states[20]["3.weight"], pretrained["3.weight"])  # the head was trained
    a, b = (_states(store, job, k)[20]["3.weight"] for k in (0, 1))
    assert not torch.equal(a, b)  # the replicates differ by their data order only

    # the run hash covers the checkpoint's content: new weights at the same path are a new run
    before = job.hash
    torch.save({n: t + 1 for n, t in pretrained.items()}, tmp_path / "pre.pt")
    assert job_from_dict(raw).hash != before
    with pytest.raises(SpecError, match="matches no parameter of the model; its parameters are"):
        from raysweep.validate import check_builder

        check_builder(job_from_dict({**raw, "train": {**raw["train"], "freeze": ["encoder.*"]}}), (32,), 10)
    torch.save({"1.weight": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    with pytest.raises(SpecError, match="does not fit model 'mlp'"):
        check_builder(
            job_from_dict({**raw, "train": {**raw["train"], "init_from": str(tmp_path / "bad.pt")}}), (32,), 10
        )
