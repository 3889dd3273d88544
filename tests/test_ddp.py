"""Data-parallel replicates: 2 gloo ranks on Ray Train give the single-process run's weights; micro-
batches give the whole batch's update; the rank split of an epoch covers it exactly once."""
import copy

import torch
from conftest import TINY

from raysweep.data.batches import train_batches
from raysweep.data.registry import load_splits
from raysweep.evaluate.losses import loss_fn
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.spec import parse_job
from raysweep.train.loop import setup, sgd_step, train_replicate

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


def _cmdline(p) -> str:
    import psutil

    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # ended meanwhile
        return ""


def test_a_lost_training_worker_restarts_its_replicate_from_the_last_resume_state(tmp_path):
    """2 gloo ranks on Ray Train, one of them SIGKILLed mid-run: Ray Train restarts the worker group, which
    resumes from the state rank 0 left at the last epoch's end; the replicate ends with the weights one
    process computes for the same global batches (≤ 1e-6 relative in every weight)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil
    from conftest import write_job_toml

    raw = {**RAW, "name": "ddpkill", "resources": {"workers_per_trial": 2},
           "train": {**RAW["train"], "epochs": 12, "batch_size": 20, "checkpoints": "every_epoch"}}
    job_file = write_job_toml(tmp_path / "k.toml", raw)
    store = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "train", job_file, "--storage", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    job = parse_job({**raw, "resources": {"workers_per_trial": 2}})
    done_epochs = lambda: len(list((store / job.name / job.hash / "replicate_0").glob("step_*.json")))  # noqa: E731
    killed = None
    try:
        deadline = time.time() + 300
        while done_epochs() < 4 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)  # this run's Ray, no other
                   if "RayTrainWorker" in _cmdline(p)]
        assert workers and done_epochs() < 13, "no training worker to kill, or training already over"
        killed = done_epochs()
        os.kill(workers[-1].pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert 4 <= killed < 13 and done_epochs() == 13  # steps 0, 50, ..., 600
    reference = parse_job({**raw, "resources": {}})
    train_replicate(reference, 0, Store(str(tmp_path / "one")))
    ones, twos = read_manifests(Store(str(tmp_path / "one")), reference, 0), read_manifests(Store(str(store)), job, 0)
    a = load_tensors(Store(str(tmp_path / "one")), ones[600]["path"], ones[600]["sha256"])
    b = load_tensors(Store(str(store)), twos[600]["path"], twos[600]["sha256"])
    assert twos[600]["workers"] == 2 and twos[600]["micro_batch"] == 10 and twos[600]["images_per_s"] > 0
    assert job.hash != reference.hash  # the world size is part of the run
    for name in a:  # 600 updates of 2 gloo ranks, one restart, against one process
        rel = ((a[name] - b[name]).abs().max() / a[name].abs().max()).item()
        assert rel <= 1e-6, (name, rel)
