"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020, "Linear mode connectivity and the lottery
ticket hypothesis"): two children of replicate k spawned from its checkpoint θ_s, each trained on to T
with its own data order and dropout masks; the `instability` sweep interpolates between them.

A child starts from the parent's stored weights at step s (the parent's checkpoint file is shared,
never copied), with the parent's learning-rate schedule from iteration s on and a fresh momentum
buffer (raysweep keeps weights, not optimizer state, at every checkpoint). It keeps its own resume
state at every epoch's end, so a killed child resumes like a replicate, bitwise on CPU. Only its
final weights are kept: `replicate_<k>/spawn_<s>_c<c>/step_<T>.safetensors` with its manifest.
"""
from __future__ import annotations

import time

import torch

from raysweep.data import load_splits, train_batches
from raysweep.evaluate import pick_device, split_metrics
from raysweep.evaluate.losses import loss_fn
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors, save_tensors
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import Job
from raysweep.train.loop import _prepare, restore_state, save_state, sgd_step
from raysweep.train.schedule import iterations_per_epoch


def child_seed(job: Job, k: int, step: int, child: int) -> int:
    """A seed of its own for each child (data order, dropout), distinct from every replicate's."""
    return (((job.seed + k) * 1_000_003 + step) * 4 + child + 1) % (2**31 - 1)


def child_checkpoint(run: str, k: int, step: int, child: int, total: int) -> str:
    return f"{paths.child_dir(run, k, step, child)}/step_{total:08d}.safetensors"


def child_done(store: Store, job: Job, k: int, step: int, child: int) -> bool:
    run = paths.run_dir(job.name, job.hash)
    return store.exists(f"{paths.child_dir(run, k, step, child)}/done.json")


def train_child(job: Job, k: int, step: int, child: int, store: Store, progress=None) -> None:
    """Train child `child` of replicate k from the parent's step `step` to the end of training."""
    from raysweep.sweep import read_manifests

    run = paths.run_dir(job.name, job.hash)
    folder = paths.child_dir(run, k, step, child)
    if store.exists(f"{folder}/done.json"):
        return
    parent = read_manifests(store, job, k)
    if step not in parent:
        raise ValueError(f"replicate {k} has no checkpoint at step {step} to spawn from; its steps are "
                         f"{sorted(parent)}")
    device = pick_device(job.eval.device)
    data = load_splits(job.data, store)
    t = job.train
    model = build_model(job.model, data.in_shape, data.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    per_epoch = iterations_per_epoch(data.n_train, t.batch_size)
    total = per_epoch * t.epochs
    seed = child_seed(job, k, step, child)
    state_path = f"{folder}/state.safetensors"
    it = step
    if store.exists(state_path):  # resume: weights, momentum, RNG and iteration of the last epoch's end
        record = store.read_json(f"{folder}/state.json")
        it = restore_state(model, opt, load_tensors(store, state_path, record["sha256"]))
    else:
        tensors = load_tensors(store, parent[step]["path"], parent[step]["sha256"])
        model.load_state_dict(tensors)
        torch.manual_seed(seed)
    per_example = loss_fn(t.loss)
    model.train()
    while it < total:
        epoch, skip = divmod(it, per_epoch)
        for x, y in train_batches(data, t.batch_size, seed, epoch, skip, job.data.num_workers):
            sgd_step(job, data, model, opt, x, y, it, per_epoch, device, per_example)
            it += 1
        if it < total:  # the end of an epoch: a resume point
            save_state(store, state_path, f"{folder}/state.json", model, opt, it)
        if progress:
            progress({"replicate": k, "spawn_step": step, "child": child, "step": it, "total": total})
    sha = save_tensors(store, child_checkpoint(run, k, step, child, total), model.state_dict())
    x, y = data.split("test")
    test_loss, test_error = split_metrics(model, x.to(device), y.to(device), job.eval.batch_size,
                                          lambda b: _prepare(job, data, b, device), per_example)
    store.write_json(f"{folder}/step_{total:08d}.json",
                     {"job": job.name, "hash": job.hash, "replicate": k, "spawn_step": step, "child": child,
                      "step": total, "sha256": sha, "seed": seed, "test_loss": test_loss, "test_error": test_error})
    store.write_json(f"{folder}/done.json", {"step": total, "finished": time.time()})
    for p in (state_path, f"{folder}/state.json"):
        store.delete(p)
    if progress:
        progress({"replicate": k, "spawn_step": step, "child": child, "step": total, "total": total,
                  "test_error": test_error})
