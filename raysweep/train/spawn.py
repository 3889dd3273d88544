"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020, "Linear mode connectivity and the lottery
ticket hypothesis"): two children of replicate k spawned from its checkpoint θ_s, each trained on to T
with its own data order and dropout masks; the `instability` sweep interpolates between them.

A child starts from the parent's stored weights at step s (the parent's checkpoint file is shared,
never copied), with the parent's learning-rate schedule from iteration s on and a fresh momentum
buffer (raysweep keeps weights, not optimizer state, at every checkpoint). It keeps its own resume
state at every epoch's end, so a killed child resumes like a replicate, bitwise on CPU; it trains through
the replicates' own epoch loop (loop.run_steps). Only its
final weights are kept: `replicate_<k>/spawn_<s>_c<c>/step_<T>.safetensors` with its manifest.
"""
from __future__ import annotations

import time

import torch

from raysweep.data.registry import load_splits
from raysweep.evaluate.losses import loss_fn
from raysweep.evaluate.sums import pick_device, split_metrics
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors, save_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.spec import Job
from raysweep.train.loop import prepare, run_steps, setup
from raysweep.train.schedule import iterations_per_epoch
from raysweep.train.state import restore_state, save_state
from raysweep.work.tasks import Child


def child_seed(job: Job, k: int, step: int, child: int) -> int:
    """A seed of its own for each child (data order, dropout), distinct from every replicate's."""
    return (((job.seed + k) * 1_000_003 + step) * 4 + child + 1) % (2**31 - 1)


def train_child(job: Job, k: int, step: int, child: int, store: Store, progress=None) -> None:
    """Train child `child` of replicate k from the parent's step `step` to the end of training."""
    run = paths.run_dir(job.name, job.hash)
    if Child(k, step, child).done(store, job):
        return
    parent = read_manifests(store, job, k)
    if step not in parent:
        raise ValueError(f"replicate {k} has no checkpoint at step {step} to spawn from; its steps are "
                         f"{sorted(parent)}")
    device = pick_device(job.eval.device)
    data = load_splits(job.data, store)
    t = job.train
    model, opt = setup(job, data, device)
    per_epoch = iterations_per_epoch(data.n_train, t.batch_size)
    total = per_epoch * t.epochs
    seed = child_seed(job, k, step, child)
    state_path, state_record = paths.child_state(run, k, step, child), paths.child_state_record(run, k, step, child)
    it = step
    if store.exists(state_path):  # resume: weights, momentum, RNG and iteration of the last epoch's end
        it = restore_state(model, opt, load_tensors(store, state_path, store.read_json(state_record)["sha256"]))
    else:
        model.load_state_dict(load_tensors(store, parent[step]["path"], parent[step]["sha256"]))
        torch.manual_seed(seed)

    def after(it: int) -> None:
        if it % per_epoch:
            return
        if it < total:  # the end of an epoch: a resume point
            save_state(store, state_path, state_record, model, opt, it)
        if progress:
            progress({"replicate": k, "spawn_step": step, "child": child, "step": it, "total": total})

    run_steps(job, data, model, opt, seed, it, total, device, after)
    sha = save_tensors(store, paths.child_checkpoint(run, k, step, child, total), model.state_dict())
    x, y = data.split("test")
    test_loss, test_error = split_metrics(model, x.to(device), y.to(device), job.eval.batch_size,
                                          lambda b: prepare(job, data, b, device), loss_fn(t.loss))
    store.write_json(paths.child_manifest(run, k, step, child, total),
                     {"job": job.name, "hash": job.hash, "replicate": k, "spawn_step": step, "child": child,
                      "step": total, "sha256": sha, "seed": seed, "test_loss": test_loss, "test_error": test_error})
    store.write_json(paths.child_done(run, k, step, child), {"step": total, "finished": time.time()})
    for p in (state_path, state_record):
        store.delete(p)
    if progress:
        progress({"replicate": k, "spawn_step": step, "child": child, "step": total, "total": total,
                  "test_error": test_error})
