"""Instability analysis (LMC): children spawned from a replicate's checkpoint, trained on to T with their
own data order, resumable like replicates, and the line between them swept like any other."""
import copy

import polars as pl
import pytest
import torch
from conftest import TINY

from raysweep.api import Run
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.spec import SpecError, parse_job
from raysweep.train.loop import train_replicate
from raysweep.train.spawn import train_child
from raysweep.work.tasks import Child, task_of

RAW = {**copy.deepcopy(TINY), "name": "lmc",
       "sweeps": [{"name": "lmc", "kind": "instability", "spawn_steps": [0, 5], "alpha": {"num": 5}}]}


class Stop(Exception):
    pass


def _child(store, job, k, s, c):
    run = paths.run_dir(job.name, job.hash)
    total = max(read_manifests(store, job, k))
    folder = paths.child_dir(run, k, s, c)
    m = store.read_json(f"{folder}/step_{total:08d}.json")
    return load_tensors(store, paths.child_checkpoint(run, k, s, c, total), m["sha256"])


def test_children_are_swept_and_give_instability_per_spawn_step(tmp_path):
    job = parse_job(RAW)
    run = Run(job, Store(str(tmp_path)))
    for k in run.replicates:
        train_replicate(job, k, run.store)
    assert run.children_todo() == [Child(k, s, c) for k in (0, 1) for s in (0, 5) for c in (0, 1)]
    for task in run.children_todo():
        assert task_of(task.key) == task
        train_child(job, task.k, task.step, task.child, run.store)
    assert run.children_todo() == []
    a, b = _child(run.store, job, 0, 5, 0), _child(run.store, job, 0, 5, 1)
    last = read_manifests(run.store, job, 0)[20]  # T = 2 epochs x 10 iterations
    final = load_tensors(run.store, last["path"], last["sha256"])
    assert any(not torch.equal(a[n], b[n]) for n in a)  # different data orders
    assert any(not torch.equal(a[n], final[n]) for n in a)  # not the parent's own run
    assert not run.sweep(progress=False, local=True).failures
    barriers = run.aggregate()["barriers"].filter(pl.col("metric") == "error")
    assert sorted(barriers["step"].to_list()) == [0, 5] and barriers["n"].to_list() == [2, 2]
    points = run.points.collect()
    assert set(points["step_a"]) == {0, 5} and (points["step_a"] == points["step_b"]).all()
    assert points.height == 2 * 2 * 5  # replicates x spawn steps x α
    from raysweep.report.figures import figures, load_tables

    assert [f.name for f in figures(run.job, load_tables(run.tables))][:2] == ["LMC-instability-lmc", "LMC-curves-lmc"]


def test_a_killed_child_resumes_to_the_same_weights(tmp_path):
    job = parse_job(RAW)
    clean, killed = Store(str(tmp_path / "clean")), Store(str(tmp_path / "killed"))
    for store in (clean, killed):
        train_replicate(job, 0, store)
    train_child(job, 0, 0, 1, clean)

    def stop_after_first_epoch(info):
        raise Stop
    with pytest.raises(Stop):
        train_child(job, 0, 0, 1, killed, progress=stop_after_first_epoch)
    train_child(job, 0, 0, 1, killed)
    a, b = _child(clean, job, 0, 0, 1), _child(killed, job, 0, 0, 1)
    assert all(torch.equal(a[n], b[n]) for n in a)  # bitwise on CPU


def test_spawn_steps_must_be_stored_checkpoints(tmp_path):
    with pytest.raises(SpecError, match="spawn_steps"):
        parse_job({**RAW, "sweeps": [{"name": "x", "kind": "instability"}]})
    job = parse_job({**RAW, "sweeps": [{"name": "lmc", "kind": "instability", "spawn_steps": [3]}]})
    run = Run(job, Store(str(tmp_path)))
    train_replicate(job, 0, run.store)
    train_replicate(job, 1, run.store)
    with pytest.raises(SpecError, match=r"spawn_steps \[3\].*\[0, 5, 10\]"):
        run.children_todo()
