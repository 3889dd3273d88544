"""Shared fixtures: a temporary Store, tiny jobs, and one local Ray for the whole session."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Set before any Ray starts, so that Ray's workers inherit them: S3 goes to the local moto server.
S3_PORT = free_port()
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
                  AWS_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}")

import pytest  # noqa: E402
import torch  # noqa: E402

from raysweep.io.store import Store  # noqa: E402
from raysweep.spec import parse_job  # noqa: E402

torch.set_num_threads(1)

TINY = {
    "name": "tiny",
    "replicates": 2,
    "data": {"name": "blobs"},
    "model": {"name": "mlp", "hidden": [16], "batchnorm": True},
    "train": {"epochs": 2, "batch_size": 100, "lr": 0.1, "momentum": 0.9, "checkpoints": "list",
              "steps": [0, 5, 10]},
    "eval": {"batch_size": 128},
    "sweeps": [
        {"name": "i1", "kind": "init_to_final", "alpha": {"num": 11}, "splits": ["train", "test"], "chunk": 4},
        {"name": "i2", "kind": "step_to_final", "alpha": {"num": 5}},
        {"name": "i5", "kind": "final_to_final", "alpha": {"start": -0.5, "stop": 1.5, "num": 9}},
        {"name": "i6", "kind": "random_to_final", "alpha": {"num": 5}, "bn": "reset", "bn_batches": 3},
    ],
}


def make_job(**changes):
    import copy

    raw = copy.deepcopy(TINY)
    for key, value in changes.items():
        node = raw
        *parents, last = key.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return parse_job(raw, "tiny test job")


def run_in_process(raw: dict, root):
    """A job trained and swept in this process, without Ray, and aggregated: a reference run."""
    from raysweep.api import Run
    from raysweep.train.loop import train_replicate

    run = Run(parse_job(raw), Store(str(root)))
    for k in run.replicates:
        train_replicate(run.job, k, run.store)
    assert not run.sweep(progress=False, local=True).failures
    run.aggregate()
    return run


# The full suite is CI's (~20 min on 2 cores). `scripts/test --quick` leaves out these modules, each of which starts
# clusters, Slurm, fault scenarios or long trainings: the unit tests and one end-to-end run (test_e2e_digits) stay,
# under 5 minutes — the edit loop's tier. Run the full suite before a change lands.
SLOW_MODULES = {"test_cluster.py", "test_slurm_cluster.py", "test_rehearse.py", "test_faults.py", "test_ddp.py",
                "test_stream_mix.py", "test_packed.py", "test_plugins.py", "test_paper_jobs.py", "test_curves.py",
                "test_storage_full.py", "test_fashion_mnist.py", "test_s3_pipeline.py", "test_store.py",
                "test_benchmarks.py", "test_finetune.py", "test_instability.py", "test_figures.py",
                "test_answers.py", "test_merges.py", "test_trajectory.py", "test_sharpness.py", "test_repair.py",
                "test_misleading.py", "test_lease.py", "test_optimizers.py", "test_fidelity.py", "test_user_kind.py"}


def need(program: str, package: str) -> str:
    """The path of `program`; where it is missing, the test is skipped with one line naming the Debian package —
    except in the full suite (scripts/test sets RAYSWEEP_TEST_FULL, having installed it), where that fails."""
    import shutil

    found = shutil.which(program) or (shutil.which("chromium-browser") if program == "chromium" else None)
    if found:
        return found
    why = f"needs {program} (Debian package {package}; the full suite, scripts/test, installs it as root)"
    if os.environ.get("RAYSWEEP_TEST_FULL"):
        pytest.fail(why)
    pytest.skip(why)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: left out of `scripts/test --quick` (clusters, Slurm, faults, trainings)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_job():
    return make_job()


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def write_job_toml(path: Path, raw: dict = TINY) -> str:
    """A job dict as a TOML file, the way a user would write it; returns the path."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, (dict, list))]
    for k, v in raw.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    for sweep in raw.get("sweeps", []):
        lines += ["[[sweeps]]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in sweep.items()]
    Path(path).write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"))


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs) shared by the tests that need it; shut down at the end."""
    from raysweep.connect import init_ray, shutdown_ray

    init_ray(num_cpus=2)
    yield
    shutdown_ray(force=True)


def start_moto(port: int, **env) -> subprocess.Popen:
    """A real S3-protocol server (moto_server) on 127.0.0.1:port; returns once it answers."""
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto_server did not start")


@pytest.fixture(scope="session")
def s3_server():
    proc = start_moto(S3_PORT)
    yield f"http://127.0.0.1:{S3_PORT}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket on the local S3 server; yields (name, boto3 client)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server)
    name = f"sweeps-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    yield name, client
