"""raysweep on clusters: an autoscaling GPU cluster started the way `ray up` starts one (Ray's fake
multi-node provider) running the README's cluster command through `ray job submit`; storage settings,
the local-storage refusal and the data check on a multi-node cluster; the GPU policy; the split cache."""
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import S3_PORT, TINY, run_in_process, write_job_toml
from fake_cluster import FakeCluster

from raysweep.api import Run
from raysweep.io.store import Store
from raysweep.spec import SpecError, parse_job

HERE = Path(__file__).parent
# Small, but every stage: two replicates, three sweep kinds, several items per sweep.
CLUSTER_JOB = {**TINY, "name": "tiny_cluster",
               "sweeps": [s for s in TINY["sweeps"] if s["name"] in ("i1", "i2", "i5")]}


_local_reference = run_in_process  # the same job without Ray: the tables a cluster must match


def _frames_equal(a: pl.DataFrame, b: pl.DataFrame, key: list[str]) -> None:
    from polars.testing import assert_frame_equal

    assert_frame_equal(a.sort(key), b.sort(key), check_exact=False, rel_tol=1e-9, abs_tol=1e-12)


def test_the_rehearsal_on_the_projects_own_layout(s3_bucket, tmp_path):
    """cluster.yaml's layout (a head with 0 CPUs, workers only from the autoscaler): the rehearsal's probes
    ask for a worker and wait for it, naming what they wait for; every stage passes."""
    bucket, _ = s3_bucket
    job_file = write_job_toml(tmp_path / "tiny_cluster.toml", CLUSTER_JOB)
    uri = f"s3://{bucket}/sweeps?endpoint_override=127.0.0.1:{S3_PORT}&scheme=http"
    cluster = FakeCluster(tmp_path / "cluster")
    cluster.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{cluster.env.get('PATH', '')}"
    with cluster:
        h = cluster.job_submit(["raysweep", "run", job_file, "--replicates", "2", "--storage", uri,
                                "--address", "auto", "--rehearse", "--no-progress"], timeout=900)
    hlog = h.stdout + h.stderr
    assert h.returncode == 0 and "succeeded" in hlog, hlog[-4000:]
    assert "rehearsal: waiting for a node that runs work: the head" in hlog
    for stage in ("cluster", "store", "data", "plan", "train", "checkpoints", "sweep", "aggregate", "projection"):
        assert f"[{stage}] ok" in hlog, (stage, hlog[-4000:])
    assert "each stored once (yes)" in hlog
    assert "NOT measured" in hlog  # the fake GPUs have no CUDA behind them: said, not guessed


def test_fake_autoscaler_runs_the_readme_cluster_command(s3_bucket, tmp_path):
    bucket, _ = s3_bucket
    job_file = write_job_toml(tmp_path / "tiny_cluster.toml", CLUSTER_JOB)
    # the endpoint travels in the URI; the cluster's processes do not have AWS_ENDPOINT_URL
    uri = f"s3://{bucket}/sweeps?endpoint_override=127.0.0.1:{S3_PORT}&scheme=http"
    cluster = FakeCluster(tmp_path / "cluster")
    cluster.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{cluster.env.get('PATH', '')}"
    cluster.env["RAYSWEEP_LOG_INTERVAL"] = "0"
    with cluster:
        r = cluster.job_submit(["raysweep", "run", job_file, "--replicates", "2", "--storage", uri,
                                "--address", "auto"], timeout=900)
        log = r.stdout + r.stderr
        assert r.returncode == 0 and "succeeded" in log, log[-4000:]
        # a data-parallel replicate: 2 Ray Train workers, each holding one (fake) GPU on its own node
        ddp_raw = {**CLUSTER_JOB, "name": "tiny_ddp", "replicates": 1, "sweeps": CLUSTER_JOB["sweeps"][:1],
                   "resources": {"gpus_per_trial": 2}}
        ddp_file = write_job_toml(tmp_path / "tiny_ddp.toml", ddp_raw)
        d = cluster.job_submit(["raysweep", "run", ddp_file, "--storage", uri, "--address", "auto", "--no-report"],
                               timeout=900)
        assert d.returncode == 0 and "succeeded" in d.stdout + d.stderr, (d.stdout + d.stderr)[-4000:]
    ddp = Run(parse_job(ddp_raw), Store(uri)).checkpoints.collect()
    assert ddp.height == 4 and set(ddp["workers"]) == {2} and set(ddp["gpu_ids"]) == {"0"}
    nodes = {n for row in ddp["rank_nodes"] for n in row.split(",")}
    assert len(nodes) == 2 and all(n.startswith("f" * 51) and not n.endswith("00000") for n in nodes)
    # logs a person can follow in `ray job logs`: plain lines, not a bar printed once at the end
    assert "train replicate 0: step 20/20" in log and "train replicate 1: step 20/20" in log
    assert "sweep: 0/" in log and "work items (100%)" in log
    assert "waiting for 1 GPU(s) for the dataset check on a worker: the cluster has 0 now" in log
    assert "constructor arguments in the object store" not in log

    run = Run(parse_job(CLUSTER_JOB), Store(uri))
    head = "f" * 51 + "00000"  # the fake provider's head node id; workers count up from ...00001
    ck = run.checkpoints.collect()
    assert ck.height == 2 * 4  # 2 replicates x steps {0, 5, 10, 20}
    # every training trial ran on an autoscaled GPU worker holding exactly one (fake) GPU
    assert set(ck["gpu_ids"]) == {"0"} and head not in set(ck["node_id"])
    assert all(n.startswith("f" * 51) for n in ck["node_id"]) and set(ck["device"]) == {"cpu"}
    points = run.points.collect()
    assert points.height > 0 and set(points["gpu_ids"]) == {"0"}  # each evaluator actor: one GPU
    assert head not in set(points["node_id"]) and all(n.startswith("f" * 51) for n in points["node_id"])
    # the same numbers as a run on one machine without Ray
    ref = _local_reference(CLUSTER_JOB, tmp_path / "local")
    _frames_equal(run.curves.collect(), ref.curves.collect(), ["sweep", "step_a", "split", "alpha"])
    _frames_equal(run.barriers.collect(), ref.barriers.collect(), ["sweep", "step_a", "split", "metric"])


def test_multinode_storage_reaches_nodes_local_storage_refused_data_checked_on_a_worker(s3_bucket, tmp_path):
    bucket, client = s3_bucket
    report = tmp_path / "report.json"
    local = tmp_path / "local-store"
    raw = {**CLUSTER_JOB, "sweeps": CLUSTER_JOB["sweeps"][:1]}
    proc = subprocess.run([sys.executable, str(HERE / "multinode_checks.py"), json.dumps(raw), bucket, str(local),
                           str(report)], cwd=HERE, capture_output=True, text=True, timeout=600)
    out = json.loads(report.read_text()) if report.exists() else {}
    assert proc.returncode == 0 and out, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out["raylets"] == 3 and out["raylets_with_endpoint"] == 0  # the nodes do not know the endpoint
    assert out["failures"] == 0 and out["items"] == 2 * 3  # 2 replicates x 11 α in chunks of 4
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    assert {env for env, _ in out["worker_env"]} == {endpoint}  # ... but every worker process got it
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    job = parse_job(raw)
    prefix = f"sweeps/{job.name}/{job.hash}/"
    assert sum(k.startswith(prefix + "points/") for k in keys) == out["items"]
    assert {f"{prefix}replicate_{k}/step_{s:08d}.safetensors" for k in (0, 1) for s in (0, 5, 10, 20)} <= set(keys)
    # a local folder on a multi-node cluster is refused before anything is written
    assert "--shared-storage" in out["local_refused"] and "s3://" in out["local_refused"]
    assert not local.exists()
    # the dataset was looked for on a worker node, not on the head
    assert "on Ray node" in out["data_error"] and out["head_node"] not in out["data_error"]
    assert "MNIST" in out["data_error"]


# ------------------------------------------------------------------------ GPU policy (no Ray needed)


def _job(**resources):
    return parse_job({**TINY, "resources": resources})


@pytest.mark.parametrize("accelerator,gpus_now,gpus_max,local,expected", [
    ("auto", 0, 0, True, 0.0),     # a laptop: CPUs
    ("auto", 1, 1, True, 1.0),     # a GPU workstation: one GPU per trial
    ("auto", 0, 16, False, 1.0),   # an autoscaling cluster with no GPU node up yet: GPUs, not CPUs
    ("auto", 0, 0, False, 0.0),    # a CPU-only cluster
    ("gpu", 0, 0, False, 1.0),     # a GPU job on a cluster that has none yet: waits, never CPUs
    ("cpu", 8, 8, False, 0.0),
])
def test_gpu_policy(accelerator, gpus_now, gpus_max, local, expected):
    from raysweep.cluster.policy import Capacity, decide_gpus

    cap = Capacity(4.0, gpus_now, 4.0, gpus_max, local)
    assert decide_gpus(_job(accelerator=accelerator), -1.0, "gpus_per_trial", cap) == expected


def test_gpu_requests_no_local_node_can_meet_are_errors():
    from raysweep.cluster.policy import Capacity, decide_gpus

    laptop = Capacity(4.0, 0.0, 4.0, 0.0, True)
    with pytest.raises(SpecError, match="meant for GPUs.*resources.accelerator=cpu"):
        decide_gpus(_job(accelerator="gpu"), -1.0, "gpus_per_trial", laptop)
    with pytest.raises(SpecError, match="gpus_per_actor = 2"):
        decide_gpus(_job(), 2.0, "gpus_per_actor", laptop)
    with pytest.raises(SpecError, match="accelerator = \"cpu\""):
        _job(accelerator="cpu", gpus_per_trial=1.0)


def test_autoscaler_capacity_is_read_from_its_config(tmp_path):
    from fake_cluster import config

    from raysweep.cluster.policy import _config_capacity

    cap = _config_capacity(config(6379, max_gpu_workers=2))
    assert cap["GPU"] == 2 * 1 and cap["CPU"] == 0 + 2 * 2
    import yaml

    shipped = yaml.safe_load((HERE.parent / "cluster.yaml").read_text())
    workers = shipped["available_node_types"]["gpu_worker"]
    assert (
        _config_capacity(shipped)["GPU"]
        == min(workers["max_workers"], shipped["max_workers"]) * workers["resources"]["GPU"]
    )


def test_a_joined_cluster_checks_the_storage_once_per_run(monkeypatch, tmp_path):
    """preflight checks that the store reaches every node; the connection before each stage does not
    check it again (it lists the cluster's nodes and may scan /proc for the autoscaler), nor the data."""
    from contextlib import nullcontext

    import raysweep.run.session as session

    checked, probed = [], []
    monkeypatch.setattr(session, "check_storage_reaches_nodes", lambda store, shared: checked.append(store.uri))
    monkeypatch.setattr(session, "init_ray", lambda *args, **kwargs: None)  # stands in for joining a cluster
    monkeypatch.setattr(session, "joins_cluster", lambda address: True)
    monkeypatch.setattr(session, "is_local", lambda: False)
    monkeypatch.setattr(session, "ResourceWatch", lambda *args: nullcontext())
    monkeypatch.setattr(session, "check_data_on_worker", lambda job, resources, store: probed.append(1) or "info")
    run = Run(parse_job(TINY), Store(str(tmp_path)), shared_storage=True)
    s = run.session("ray://head:10001")
    s.preflight()
    s.connect({})
    s.connect({})
    assert checked == [run.store.uri] and probed == [1] and s.data_info() == "info"


# ------------------------------------------------------------------------ storage address


def test_store_address_keeps_the_endpoint_wherever_it_came_from(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    st = Store("s3://b/p")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_REGION")
    again = Store(st.address)  # what a worker without the variables opens
    assert again.address == st.address and "endpoint_override=127.0.0.1%3A9" in st.address
    assert "scheme=http" in st.address and "region=eu-west-3" in st.address
    monkeypatch.setenv("RAYSWEEP_STORAGE", "s3://b/q?endpoint_override=127.0.0.1:7&scheme=http")
    assert "endpoint_override=127.0.0.1%3A7" in Store(None).address  # the query of $RAYSWEEP_STORAGE is kept


def test_storage_settings_reach_workers_through_the_runtime_env(monkeypatch):
    from raysweep.connect import storage_env

    monkeypatch.setenv("AWS_PROFILE", "research")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    env = storage_env()
    assert env["AWS_PROFILE"] == "research" and env["AWS_ENDPOINT_URL"] == os.environ["AWS_ENDPOINT_URL"]
    assert not any("SECRET" in k or "ACCESS_KEY" in k for k in env)  # credentials come from each node's chain


# ------------------------------------------------------------------------ split cache


def test_second_actor_reads_the_split_cache_instead_of_decoding(ray_session, store, tmp_path):
    import ray
    import torch
    from datafiles import write_imagenet

    from raysweep.spec import DataSpec

    write_imagenet(tmp_path / "imagenet")
    spec = DataSpec(name="imagenet", root=str(tmp_path / "imagenet"))

    @ray.remote(max_calls=1)  # a fresh worker process per call, like a new actor on another node
    def load(address):
        from raysweep.data import load_splits

        s = load_splits(spec, Store(address))
        return s.origin, s.test_x, s.test_y

    first = ray.get(load.remote(store.address))
    second = ray.get(load.remote(store.address))
    assert (first[0], second[0]) == ("decoded", "cache")
    assert torch.equal(first[1], second[1]) and torch.equal(first[2], second[2])
    assert first[1].dtype == torch.uint8 and tuple(first[1].shape) == (6, 3, 224, 224)
    cached = store.list("cache", ".safetensors", recursive=True)
    assert len(cached) == 1 and cached[0].startswith("cache/imagenet-")

    from raysweep.data import SplitCache, imagenet

    store.write_bytes(cached[0], store.read_bytes(cached[0])[:-10])  # a damaged cache is decoded again
    again = imagenet(spec, cache=SplitCache(store))
    assert again.origin == "decoded" and torch.equal(again.test_x, first[1])
    (tmp_path / "imagenet" / "val" / "n01440764" / "n01440764_0.JPEG").unlink()  # a changed dataset: new key
    changed = imagenet(spec, cache=SplitCache(store))
    assert changed.origin == "decoded" and len(changed.test_y) == 5
