"""`raysweep run --rehearse`: the job's real plan (replicates, checkpoints, pairs, α, work items, resources)
with a stand-in model and data, on a simulated multi-node cluster with the store in S3 (tests/
rehearsal_cluster.py runs the scenarios in a fresh interpreter): digits_mlp through the CLI, imagenet_resnet50
on its simulated GPUs with CI-sized α grids, a node lost mid-sweep, a bucket that does not exist and a node
without the dataset. The stand-in job itself is checked here against the real plan, by hand."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raysweep.data.types import DatasetInfo
from raysweep.jobs import load_job
from raysweep.run.standin import standin_job

HERE = Path(__file__).parent


def test_the_stand_in_keeps_the_plan_and_shrinks_the_model():
    job = load_job("imagenet_resnet50")
    info = DatasetInfo((3, 224, 224), 1000, {"train": 1_281_167, "test": 50_000})
    s = standin_job(job, info)
    # the real schedule: ceil(1,281,167 / 1024) = 1,252 iterations an epoch, 90 epochs: T = 112,680; Frankle's
    # points {0, T} ∪ {2^k <= 1024} ∪ {1000k: 2 <= k, 1000k < T}: 2 + 11 + 111 = 124 checkpoints
    from raysweep.train.schedule import checkpoint_steps

    steps = checkpoint_steps(s.train, 8)
    assert len(steps) == 2 + 11 + 111 and s.replicates == job.replicates == 3
    # ResNet-50 forwards 50,000 images an α: 4.1e9 × 5e4 ≫ 1e13 FLOP, so one α per item, as in the real plan
    assert all(sw.chunk == 1 for sw in s.sweeps) and [sw.alpha for sw in s.sweeps] == [sw.alpha for sw in job.sweeps]
    assert s.resources == job.resources and s.model.name == "mlp" and s.data.name == "standin"
    assert s.name == "imagenet_resnet50-rehearsal" and s.hash != job.hash


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory, s3_server):
    import uuid

    import boto3

    bucket = f"rehearsal-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    work = tmp_path_factory.mktemp("rehearsal")
    r = subprocess.run([sys.executable, str(HERE / "rehearsal_cluster.py"), bucket, str(work), str(work / "out.json")],
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads((work / "out.json").read_text())


def test_digits_through_the_cli(scenarios):
    cli = scenarios["cli"]
    assert cli["code"] == 0, cli["err"][-3000:]
    assert "rehearsal of digits_mlp/" in cli["out"] and "each stored once (yes)" in cli["out"]
    # 2 replicates × 13 checkpoints (T = 30 epochs × 40 = 1,200: 12 + 1); I2 alone has 2 × 13 pairs
    assert "2 replicates × 13 checkpoints" in cli["out"] and "3 node(s) wrote 1 MiB" in cli["out"]  # head + 2 workers


def test_imagenet_on_simulated_gpus(scenarios):
    report = scenarios["imagenet"]["report"]
    # 9 training images, batch 1,024: 1 iteration an epoch, 90 epochs: T = 90, checkpoints {0, 90} ∪ {1, 2, 4, ..., 64}
    # = 9; one α chunk per pair (a few validation images): I1 2 items + I2 2 × 9 = 20 items; 3 α each: 60 evaluations
    assert report["plan"] == {**report["plan"], "replicates": 2, "checkpoints": 9, "work_items": 20, "evaluations": 60}
    assert "GPUs" in report["checked"]["trials"] and "each stored once (yes)" in report["checked"]["sweep"]
    assert "GPU" in report["checked"]["sweep"] and "NOT measured" in report["projection_text"]  # no CUDA behind them
    assert scenarios["imagenet"]["real_files"] == []  # the real run's folder is never touched
    assert report["store"]["requests_per_item"] > 0 and report["driver_ms_per_item"] > 0


def test_a_node_lost_mid_sweep(scenarios):
    report, killed = scenarios["lost_node"]["report"], scenarios["killed"]
    assert any(killed["node"][:12] in n for n in report["nodes_left"])
    assert "each stored once (yes)" in report["checked"]["sweep"]


def test_an_unreadable_store_and_a_node_without_the_data_stop_at_their_stage(scenarios):
    failed = scenarios["no_bucket"]["failed"]
    assert "stage store" in failed and "does not exist" in failed and "Fix:" in failed
    failed = scenarios["no_data"]["failed"]
    assert "stage data on 1 of" in failed and "nodedata is not on this node" in failed and "Fix:" in failed


def test_imagenet_on_this_machines_cpus_passes_every_stage(tmp_path):
    """The issue's case: a 2-CPU machine, resources.accelerator = cpu, a small ImageNet-layout folder. The
    projection asks for what a trial holds fitted to this machine (8 CPUs per trial → 2), never for more than a
    node has; the plan says the folder is far smaller than ImageNet; nothing is written into the real run."""
    import os

    from datafiles import write_imagenet

    root = write_imagenet(tmp_path / "imagenet")
    storage = tmp_path / "store"
    r = subprocess.run([sys.executable, "-m", "raysweep", "run", "imagenet_resnet50", "--rehearse", "--no-progress",
                        "--set", "resources.accelerator=cpu", "--set", f"data.root={root}", "--storage", str(storage),
                        "--stage-timeout", "600"], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert r.returncode == 0, r.stderr[-3000:]
    said = r.stdout + r.stderr
    for stage in ("cluster", "store", "data", "plan", "train", "checkpoints", "sweep", "aggregate", "projection"):
        assert f"[{stage}] ok" in said, stage
    assert "projection: resnet50 on CPU:" in r.stdout and "NOT measured" not in said
    assert "where imagenet has 1,281,167 / 50,000: this plan follows the folder" in r.stdout
    assert sorted(p.name for p in storage.iterdir()) == ["imagenet_resnet50-rehearsal"]
    assert not (storage / "imagenet_resnet50-rehearsal" / "probes").exists()  # the probes removed
