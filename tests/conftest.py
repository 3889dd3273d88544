"""Shared fixtures: a temporary Store, tiny jobs, and one local Ray for the whole session."""
from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

from raysweep.spec import parse_job  # noqa: E402
from raysweep.store import Store  # noqa: E402

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


@pytest.fixture
def tiny_job():
    return make_job()


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"))


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs) shared by the tests that need it; shut down at the end."""
    from raysweep.cluster import init_ray, shutdown_ray

    init_ray(num_cpus=2)
    yield
    shutdown_ray(force=True)
