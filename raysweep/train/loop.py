"""Training, plain torch: replicate k from its seeded init to the end of its schedule
(``train_replicate``), through the one epoch loop (``run_steps``) that instability children
(spawn.py) train through too. Ray Tune runs one trial per replicate (tune.py).

Replicate k is seeded with ``job.seed + k``: that seed draws the initial weights, the order of the
training examples (one permutation per epoch) and the dropout masks. At every step of the
checkpoint schedule the weights go to the Store as safetensors with a JSON manifest, followed by
the optimizer and RNG state (state.py), so a killed training resumes from its last checkpoint and ends
with bitwise the same weights on CPU.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from raysweep.cluster.checks import gpu_name, provenance
from raysweep.data.batches import train_batches
from raysweep.data.registry import load_splits
from raysweep.data.types import Splits
from raysweep.evaluate.losses import loss_fn
from raysweep.evaluate.sums import pick_device, split_metrics, training_loss
from raysweep.io import paths
from raysweep.io.checkpoints import save_sized
from raysweep.io.store import Store
from raysweep.models import apply_max_norm, build_model
from raysweep.spec import Job
from raysweep.train.external import pretrained
from raysweep.train.frozen import frozen
from raysweep.train.parallel import SINGLE, Meter, Rank, backward, fitting_micro_batch, unwrap
from raysweep.train.schedule import checkpoint_steps, iterations_per_epoch
from raysweep.train.state import restore_state, save_replicate_state, verified_state

Progress = Callable[[dict], None]


def learning_rate(job: Job, it: int, per_epoch: int) -> float:
    """The lr of update `it` (0-based), set every iteration.

    step (OpenLTH): lr · γ^(drops passed) · min(1, it / warmup_iterations).
    linear_epoch (pylearn2 LinearDecayOverEpoch; its counter is e = epoch + 1 during an epoch): lr for
    e < start, lr − s·(e − start + 1) with s = lr·(1 − f)/(saturate − start + 1) until saturate, lr·f after.
    exponential (pylearn2 ExponentialDecay, after every update): lr / f^it, at least min_lr.
    """
    t = job.train
    if t.lr_decay == "linear_epoch":
        e = it // per_epoch + 1
        if e < t.decay_start:
            return t.lr
        if e < t.decay_saturate:
            return t.lr - t.lr * (1 - t.decay_factor) / (t.decay_saturate - t.decay_start + 1) * (e - t.decay_start + 1)
        return t.lr * t.decay_factor
    if t.lr_decay == "exponential":
        return max(t.lr / t.decay_factor ** it, t.min_lr)
    drops = sum(it >= m * per_epoch for m in t.milestones)
    warmup = t.warmup_epochs * per_epoch
    scale = min(1.0, it / warmup) if warmup > 0 else 1.0
    return t.lr * (t.gamma ** drops) * scale


def momentum(job: Job, it: int, per_epoch: int) -> float:
    """pylearn2 MomentumAdjustor (counter e = epoch + 1): μ0·(1 − a) + a·μ_final with
    a = clip((e − start)/(saturate − start), 0, 1); constant μ0 when momentum_saturate = 0."""
    t = job.train
    if not t.momentum_saturate:
        return t.momentum
    width = t.momentum_saturate - t.momentum_start
    e = it // per_epoch + 1
    a = 1.0 if width == 0 else min(1.0, max(0.0, (e - t.momentum_start) / width))
    return t.momentum * (1 - a) + a * t.final_momentum


def replicate_seed(job: Job, k: int) -> int:
    return job.seed + k


def _save_checkpoint(store: Store, job: Job, k: int, model, step: int, per_epoch: int, data: Splits,
                     device, extra: dict | None = None) -> dict:
    run = paths.run_dir(job.name, job.hash)
    sha, size = save_sized(store, paths.checkpoint(run, k, step), model.state_dict())
    entry = {"job": job.name, "hash": job.hash, "replicate": k, "step": step,
             "epoch": step / per_epoch, "sha256": sha, "bytes": size, "path": paths.checkpoint(run, k, step),
             **provenance(device), "gpu_name": gpu_name(device), **(extra or {})}
    for split in job.train.log_splits:
        if split == "train" and data.train_x is None:  # a streamed training split is not evaluated whole
            continue
        x, y = data.split(split)
        entry[f"{split}_loss"], entry[f"{split}_error"] = split_metrics(
            model, x.to(device), y.to(device), job.eval.batch_size, lambda b: prepare(job, data, b, device),
            loss_fn(job.train.loss))
    store.write_json(paths.manifest(run, k, step), entry)
    return entry


def prepare(job: Job, data: Splits, x: torch.Tensor, device) -> torch.Tensor:
    """A batch of inputs as the model takes it: on the device, prepared (uint8 decoded and normalised), in
    channels_last on CUDA when the job says so. Replicates, children and bends train on these alike."""
    return data.prepare(
        x.to(device, non_blocking=True), channels_last=job.train.channels_last and device.type == "cuda"
    )


def sgd_step(job: Job, data: Splits, model, opt, x, y, it: int, per_epoch: int, device, per_example,
             rank: Rank = SINGLE, micro: int = 0) -> None:
    """Update `it` (0-based) of a training run: the schedule's lr and momentum, one SGD step on (x, y)
    (this rank's part of the update's batch, `micro` examples per forward at most), then the max-norm
    constraint."""
    t = job.train
    for group in opt.param_groups:
        group["lr"] = learning_rate(job, it, per_epoch)
        if "momentum" in group:  # SGD; Adam's β1 is its own
            group["momentum"] = momentum(job, it, per_epoch)
    x, y = prepare(job, data, x, device), y.to(device, non_blocking=True)
    autocast = t.amp and device.type == "cuda"
    opt.zero_grad(set_to_none=True)
    if rank.world == 1 and not 0 < micro < len(y):  # one batch, one process: the mean loss, as always
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = training_loss(model(x), y, per_example)
        loss.backward()
    else:  # ranks and micro-batches: scaled sums, so the update is the whole batch's mean gradient
        # the update's examples over all ranks, known without asking them: a stream gives every rank as
        # many; an in-memory epoch's batches are batch_size but the last
        n = (
            rank.world * len(y)
            if data.stream is not None
            else min(t.batch_size, data.n_train - (it % per_epoch) * t.batch_size)
        )
        backward(model, x, y, per_example, rank.world / n, micro, autocast)
    opt.step()
    if t.max_norm:
        apply_max_norm(unwrap(model), t.max_norm)


def setup(job: Job, data: Splits, device, seed: int | None = None):
    """(model, optimizer): the job's model (from `seed` when given) on the device, and its `make_optimizer`."""
    t = job.train
    model = build_model(job.model, data.in_shape, data.num_classes, seed=seed)
    if t.init_from and seed is not None:  # fine-tuning: the pretrained weights replace the init
        model.load_state_dict(pretrained(job, model.state_dict()))
    model = model.to(device)
    if t.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    fixed = frozen(job, model)
    for name, p in model.named_parameters():
        p.requires_grad_(name not in fixed)
    params = [p for n, p in model.named_parameters() if n not in fixed]  # frozen ones: no update, no decay
    return model, make_optimizer(job, params, t.lr, t.weight_decay)


def make_optimizer(job: Job, params: list, lr: float, weight_decay: float):
    """train.optimizer over `params`: SGD with the job's momentum, or Adam/AdamW with its betas."""
    t = job.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t.momentum, weight_decay=weight_decay)
    cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=tuple(t.betas), weight_decay=weight_decay)


def run_steps(job: Job, data: Splits, model, opt, seed: int, step: int, total: int, device,
              after: Callable[[int], None], rank: Rank = SINGLE, micro: int = 0, meter: Meter | None = None) -> int:
    """The epoch loop: updates `step` ... `total` − 1 over the epochs' seeded example orders (a start in
    the middle of an epoch skips that epoch's first batches), calling `after(step)` after each. With
    ranks, each takes its part of every update's batch."""
    per_epoch = iterations_per_epoch(data.n_train, job.train.batch_size)
    per_example = loss_fn(job.train.loss)
    meter = meter or Meter()
    model.train()
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        batches = train_batches(data, job.train.batch_size, seed, epoch, skip, job.data.num_workers, rank.rank,
                                rank.world)
        for x, y in meter.timed(batches, rank.world):
            sgd_step(job, data, model, opt, x, y, step, per_epoch, device, per_example, rank, micro)
            step += 1
            after(step)
    return step


def train_replicate(job: Job, k: int, store: Store, progress: Progress | None = None,
                    data: Splits | None = None, rank: Rank = SINGLE) -> None:
    """Train replicate k, saving the checkpoint schedule; resumes from the Store if interrupted. With
    ranks (train/ddp.py), every rank runs this; rank 0 writes checkpoints, manifests and resume state,
    every rank restores from them."""
    run = paths.run_dir(job.name, job.hash)
    if store.exists(paths.train_done(run, k)):
        return
    if rank.lead and not store.exists(paths.job_json(run)):  # the run's spec beside its checkpoints
        store.write_json(paths.job_json(run), job.to_dict())
    device = pick_device(job.eval.device)
    data = data or load_splits(job.data, store)
    seed = replicate_seed(job, k)
    model, opt = setup(job, data, device, seed)
    t = job.train
    per_epoch = iterations_per_epoch(data.n_train, t.batch_size)
    total = per_epoch * t.epochs
    schedule = set(checkpoint_steps(t, data.n_train))
    torch.manual_seed(seed + 7_919 * rank.rank)  # dropout masks of their own on each rank
    state = verified_state(store, run, k) if store.exists(paths.train_state(run, k)) else None
    if rank.lead and state is None and store.exists(paths.train_state(run, k)):  # unverifiable: start over
        for p in store.list(paths.replicate_dir(run, k)):
            store.delete(p)
    rank.barrier()
    step = restore_state(model, opt, state, rank.rank) if state is not None else 0
    model = rank.wrap(model, device)
    micro = t.micro_batch or _fitting(job, data, model, device, seed, rank)
    report = progress or (lambda info: None)
    meter, last, stats = Meter(), {}, {"micro_batch": micro, "workers": rank.world}
    if rank.world > 1:  # where every rank runs (the manifest's node_id is rank 0's)
        stats["rank_nodes"] = ",".join(rank.gather(provenance(device)["node_id"]))

    def checkpoint(step: int) -> None:
        nonlocal last
        if rank.lead:
            last = _save_checkpoint(store, job, k, unwrap(model), step, per_epoch, data, device, extra=stats)
        save_replicate_state(store, run, k, model, opt, step, rank)
        model.train()

    if step == 0:
        checkpoint(0)
    report({**stats, **last, "replicate": k, "step": step, "total": total})  # the step now, not last's

    def after(step: int) -> None:
        if step in schedule or step % per_epoch == 0:
            stats.update(meter.take())
        if step in schedule:
            checkpoint(step)
        elif step % per_epoch == 0 and step < total:  # a resume point at every epoch's end
            save_replicate_state(store, run, k, model, opt, step, rank)
        if step in schedule or step % per_epoch == 0:
            report({**stats, **last, "replicate": k, "step": step, "total": total})

    run_steps(job, data, model, opt, seed, step, total, device, after, rank, micro, meter)
    if rank.lead:
        store.write_json(paths.train_done(run, k), {"step": total, "finished": time.time()})
    rank.barrier()


def _fitting(job: Job, data: Splits, model, device, seed: int, rank: Rank) -> int:
    """train.micro_batch = 0: the largest micro-batch of this rank's batch that fits (the CPU: all of it)."""
    if device.type != "cuda":
        return job.train.batch_size // rank.world
    x, y = next(iter(train_batches(data, job.train.batch_size, seed, 0, 0, 0, rank.rank, rank.world)))
    size = fitting_micro_batch(model, prepare(job, data, x, device), y.to(device), loss_fn(job.train.loss),
                               job.train.amp)
    return min(rank.gather(size))  # every rank accumulates alike
