"""Training a mode-connecting curve's bend (Garipov, Izmailov, Podoprikhin, Vetrov & Wilson 2018), one
Ray Tune trial per (curve sweep, pair of replicates): the ends θ_a = θ_T(i) and θ_b = θ_T(j) (θ_b's
units matched to θ_a's when the sweep aligns) stay fixed; the bend θ starts at their midpoint (the
Bézier curve is then the straight line) and follows

    min_θ  E_{t ~ U(0, 1)} [ loss(φ_θ(t)) + wd/2 · ‖φ_θ(t)‖² ]

one t drawn per batch, as Garipov et al. train it: the job's optimizer (SGD with its momentum, or
Adam/AdamW) without decoupled weight decay (the L2 term is on the point of the curve, wd = the job's
train.weight_decay), the learning rate held for the first half of the epochs, falling linearly to 1 %
at 90 % and held there (their schedule), the job's batches in the replicates' seeded order. The
bend is one copy of the model: its parameters are θ, and `torch.func.functional_call` runs the model
at φ(t). Parameters train.freeze names stay at the midpoint; train.max_norm is not applied.

A killed bend resumes from its last epoch's end (bend, optimizer state, RNG), bitwise on CPU. The
trained bend is kept as the model's state dict with a record (sha256, settings, the last epoch's
mean loss): `<run>/curves/<sweep>-<bend hash>/r<i>__r<j>/bend.safetensors`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.func import functional_call

from raysweep.data.batches import train_batches
from raysweep.data.registry import load_splits
from raysweep.evaluate.bend import coefficients
from raysweep.evaluate.losses import loss_fn
from raysweep.evaluate.matching import match, matching_inputs
from raysweep.evaluate.sums import pick_device, training_loss
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors, save_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import Job, bend_hash
from raysweep.train.frozen import frozen
from raysweep.train.loop import make_optimizer, prepare
from raysweep.train.schedule import iterations_per_epoch
from raysweep.train.state import restore_state, save_state
from raysweep.work.tasks import Bend


def garipov_lr(lr: float, epoch: int, epochs: int) -> float:
    """The lr of a (0-based) epoch: lr for the first half, linearly to 1 % at 90 %, 1 % after."""
    x = epoch / epochs
    return lr * (1.0 if x <= 0.5 else 1.0 - (x - 0.5) / 0.4 * 0.99 if x <= 0.9 else 0.01)


def bend_seed(job: Job, i: int, j: int) -> int:
    """The curve's own seed (its t draws and dropout masks), distinct from the replicates'."""
    return ((job.seed + i) * 1_000_003 + j + 7_777_777) % (2**31 - 1)


def curve_ends(store: Store, job: Job, i: int, j: int, sweep, model, data, device) -> tuple[dict, dict, list]:
    """(θ_a, θ_b, their sha256): the final weights of replicates i and j, θ_b's units matched to θ_a's
    when the sweep aligns (by activations: on its evaluator's batches, on `device`; the sha256 are the
    stored files')."""
    ends, shas = [], []
    for k in (i, j):
        m = read_manifests(store, job, k)
        last = m[max(m)]
        ends.append(load_tensors(store, last["path"], last["sha256"]))
        shas.append(last["sha256"])
    a, b = ends
    if sweep.align == "none":
        return a, b, shas
    inputs = lambda: matching_inputs(data, job.train.batch_size, sweep.bn_batches, device)  # noqa: E731
    return a, {n: t.cpu() for n, t in match(model, a, b, sweep.align, tuple(data.in_shape), inputs).items()}, shas


@dataclass
class _Curve:
    """What one bend trains with: the model (its parameters are the bend θ), the fixed ends on the device,
    the parameters that train (train.freeze's stay at the midpoint) and the ends' sha256."""
    model: torch.nn.Module
    a: dict
    b: dict
    names: list
    fixed: set
    shas: list

    def point(self, shape: str, t: float) -> dict:
        """φ(t) as the tensors `functional_call` runs the model at (differentiable in the bend)."""
        ca, cm, cb = coefficients(shape, t)
        bend = dict(self.model.named_parameters())
        return {n: ca * self.a[n] + cm * bend[n] + cb * self.b[n] for n in self.names}


def train_bend(job: Job, sweep_name: str, i: int, j: int, store: Store, progress=None) -> None:
    """Train the bend of curve sweep `sweep_name` between replicates i and j (resuming if interrupted), in
    four steps whose order matters: the ends and the bend at their midpoint first (the optimizer takes the
    bend's parameters), then the optimizer with the resume state (weights, moments and RNG of the last
    epoch's end: restored after the model exists, before the first t is drawn), then the epochs, then the
    bend and its record (written before `done`, and the resume state deleted last: a bend killed between
    them is found finished, never half-written)."""
    sweep = job.sweep(sweep_name)
    if Bend(sweep.name, i, j).done(store, job):
        return
    device = pick_device(job.eval.device)
    data = load_splits(job.data, store)
    curve = _curve_at_midpoint(job, sweep, i, j, store, data, device)
    epochs, lr = sweep.curve.epochs or job.train.epochs, sweep.curve.lr or job.train.lr
    opt = make_optimizer(job, [p for n, p in curve.model.named_parameters() if n not in curve.fixed], lr, 0.0)
    seed = bend_seed(job, i, j)
    step = _resume(job, sweep, i, j, store, curve.model, opt, seed)
    mean_loss = _epochs(job, sweep, i, j, store, data, device, curve, opt, step, epochs, lr, seed, progress)
    _keep(job, sweep, i, j, store, curve, {"epochs": epochs, "lr": lr, "seed": seed, "last_epoch_loss": mean_loss},
          iterations_per_epoch(data.n_train, job.train.batch_size) * epochs)


def _curve_at_midpoint(job: Job, sweep, i: int, j: int, store: Store, data, device) -> _Curve:
    """The model holding the bend at the ends' midpoint (the Bézier curve is then the straight line), on
    the device; the ends beside it."""
    model = build_model(job.model, data.in_shape, data.num_classes)
    a, b, shas = curve_ends(store, job, i, j, sweep, model, data, device)
    model.load_state_dict({n: ((a[n].double() + b[n].double()) / 2).to(a[n].dtype) if a[n].is_floating_point()
                           else a[n] for n in a})
    model = model.to(device)
    if job.train.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    fixed = frozen(job, model)
    for n, p in model.named_parameters():
        p.requires_grad_(n not in fixed)
    return _Curve(model, {n: v.to(device) for n, v in a.items()}, {n: v.to(device) for n, v in b.items()},
                  [n for n, _ in model.named_parameters()], fixed, shas)


def _resume(job: Job, sweep, i: int, j: int, store: Store, model, opt, seed: int) -> int:
    """The step to start from: the resume state's (bend, optimizer, RNG restored), else 0 with the curve's seed."""
    run, h = paths.run_dir(job.name, job.hash), bend_hash(sweep)
    state = paths.bend_state(run, sweep.name, h, i, j)
    record = paths.record(state)
    if store.exists(state) and store.exists(record):
        return restore_state(model, opt, load_tensors(store, state, store.read_json(record)["sha256"]))
    torch.manual_seed(seed)
    return 0


def _epochs(job: Job, sweep, i: int, j: int, store: Store, data, device, curve: _Curve, opt, step: int, epochs: int,
            lr: float, seed: int, progress) -> float | None:
    """The epochs from `step` on: Garipov's lr per epoch, one t ~ U(0, 1) per batch, loss(φ(t)) + wd/2·‖φ(t)‖²;
    the resume state at every epoch's end. Returns the last epoch's mean loss."""
    t_ = job.train
    run, h = paths.run_dir(job.name, job.hash), bend_hash(sweep)
    state = paths.bend_state(run, sweep.name, h, i, j)
    per_epoch = iterations_per_epoch(data.n_train, t_.batch_size)
    total, per_example, wd = per_epoch * epochs, loss_fn(t_.loss), t_.weight_decay
    autocast = t_.amp and device.type == "cuda"
    curve.model.train()
    mean_loss = None
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        for group in opt.param_groups:
            group["lr"] = garipov_lr(lr, epoch, epochs)
        losses = []
        for x, y in train_batches(data, t_.batch_size, seed, epoch, skip, job.data.num_workers):
            point = curve.point(sweep.curve.shape, float(torch.rand(())))
            x, y = prepare(job, data, x, device), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = training_loss(functional_call(curve.model, point, (x,)), y, per_example)
            if wd:  # L2 on the point of the curve (not decoupled: the optimizer has no weight decay)
                loss = loss + wd / 2 * sum(point[n].float().square().sum() for n in curve.names if n not in curve.fixed)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
        mean_loss = float(torch.stack(losses).mean()) if losses else None
        if step < total:
            save_state(store, state, paths.record(state), curve.model, opt, step)
        if progress:
            progress({"step": step, "total": total, **({"curve_loss": mean_loss} if mean_loss is not None else {})})
    return mean_loss


def _keep(job: Job, sweep, i: int, j: int, store: Store, curve: _Curve, settings: dict, total: int) -> None:
    """The trained bend and its record, then `done`, then the resume state goes."""
    run, h = paths.run_dir(job.name, job.hash), bend_hash(sweep)
    path = paths.bend(run, sweep.name, h, i, j)
    sha = save_tensors(store, path, curve.model.state_dict())
    store.write_json(
        paths.record(path),
        {
            "job": job.name,
            "hash": job.hash,
            "sweep": sweep.name,
            "replicate_a": i,
            "replicate_b": j,
            "sha256": sha,
            "sha256_a": curve.shas[0],
            "sha256_b": curve.shas[1],  # the ends it was trained between (checked before a sweep)
            "shape": sweep.curve.shape,
            "align": sweep.align,
            "epochs": settings["epochs"],
            "lr": settings["lr"],
            "weight_decay": job.train.weight_decay,
            "seed": settings["seed"],
            "last_epoch_loss": settings["last_epoch_loss"],
        },
    )
    store.write_json(paths.bend_done(run, sweep.name, h, i, j), {"step": total, "finished": time.time()})
    state = paths.bend_state(run, sweep.name, h, i, j)
    for p in (state, paths.record(state)):
        store.delete(p)
