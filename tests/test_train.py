"""The pure-torch training loop: schedule, manifests, determinism, resume, learning rate."""
import hashlib

import pytest
import torch
from conftest import make_job

from raysweep.data import load_splits
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.train.loop import learning_rate, train_replicate
from raysweep.train.schedule import checkpoint_steps


class Killed(Exception):
    pass


def final_weights(store, job, k):
    run = paths.run_dir(job.name, job.hash)
    m = read_manifests(store, job, k)
    return load_tensors(store, paths.checkpoint(run, k, max(m)), m[max(m)]["sha256"])


def test_checkpoints_and_manifests(tiny_job, store):
    train_replicate(tiny_job, 0, store)
    m = read_manifests(store, tiny_job, 0)
    n = len(load_splits(tiny_job.data).train_y)
    assert sorted(m) == checkpoint_steps(tiny_job.train, n) == [0, 5, 10, 20]
    run = paths.run_dir(tiny_job.name, tiny_job.hash)
    for step, entry in m.items():
        data = store.read_bytes(paths.checkpoint(run, 0, step))
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["epoch"] == step / 10 and 0 <= entry["test_error"] <= 1 and entry["train_loss"] > 0
    assert m[20]["train_loss"] < m[0]["train_loss"]  # it learned


def test_same_seed_same_weights_other_seed_other_weights(tiny_job, tmp_path):
    from raysweep.io.store import Store

    s1, s2 = Store(str(tmp_path / "a")), Store(str(tmp_path / "b"))
    train_replicate(tiny_job, 0, s1)
    train_replicate(tiny_job, 0, s2)
    train_replicate(tiny_job, 1, s2)
    w1, w2, w3 = final_weights(s1, tiny_job, 0), final_weights(s2, tiny_job, 0), final_weights(s2, tiny_job, 1)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not torch.equal(w1["1.weight"], w3["1.weight"])


@pytest.mark.parametrize("kill_at", [3, 12])
def test_resume_is_bitwise_identical(tmp_path, kill_at):
    """Kill training at step `kill_at` (between checkpoints), resume, compare with a clean run."""
    from raysweep.io.store import Store

    job = make_job(model__dropout=0.2)  # dropout: the RNG state must be restored too
    clean, broken = Store(str(tmp_path / "clean")), Store(str(tmp_path / "broken"))
    train_replicate(job, 0, clean)

    def die(info):
        if info["step"] >= kill_at:
            raise Killed

    with pytest.raises(Killed):
        train_replicate(job, 0, broken, progress=die)
    run = paths.run_dir(job.name, job.hash)
    assert not broken.exists(paths.train_done(run, 0))
    train_replicate(job, 0, broken)
    a, b = final_weights(clean, job, 0), final_weights(broken, job, 0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_manifests(clean, job, 0).keys() == read_manifests(broken, job, 0).keys()


def test_a_damaged_resume_state_is_not_resumed(tmp_path, caplog):
    """One flipped bit in the resume state (weights, momentum, RNG) after a kill: the replicate is
    trained again from step 0 instead of resuming from it, and ends bitwise equal to a clean run."""
    from raysweep.io.store import Store

    job = make_job(model__dropout=0.2)
    clean, broken = Store(str(tmp_path / "clean")), Store(str(tmp_path / "broken"))
    train_replicate(job, 0, clean)

    def die(info):
        if info["step"] >= 12:
            raise Killed

    with pytest.raises(Killed):
        train_replicate(job, 0, broken, progress=die)
    run = paths.run_dir(job.name, job.hash)
    state = paths.train_state(run, 0)
    data = bytearray(broken.read_bytes(state))
    data[-5] ^= 0x01  # one bit, inside the last tensor
    broken.write_bytes(state, bytes(data))
    with caplog.at_level("WARNING", logger="raysweep"):
        train_replicate(job, 0, broken)
    assert "cannot be verified" in caplog.text and "from step 0" in caplog.text
    a, b = final_weights(clean, job, 0), final_weights(broken, job, 0)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_learning_rate_schedule():
    job = make_job(train__lr=0.4, train__milestones=[2, 3], train__warmup_epochs=1.0)
    per_epoch = 10
    assert learning_rate(job, 0, per_epoch) == 0.0
    assert learning_rate(job, 5, per_epoch) == pytest.approx(0.2)   # half-way through warmup
    assert learning_rate(job, 10, per_epoch) == pytest.approx(0.4)
    assert learning_rate(job, 20, per_epoch) == pytest.approx(0.04)  # one drop at epoch 2
    assert learning_rate(job, 35, per_epoch) == pytest.approx(0.004)
