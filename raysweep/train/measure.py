"""A short timed measurement of a job's real model where the work would run (the rehearsal's projection):
a few training updates at the batch one rank takes, and a few evaluation batches, on synthetic inputs of
the real shape — the same code paths (optimizer, autocast, channels_last, inference mode) as a run."""
from __future__ import annotations

import time

import torch

from raysweep.evaluate.losses import loss_fn
from raysweep.evaluate.sums import pick_device, training_loss
from raysweep.models import build_model, example_batch
from raysweep.plugins import load_plugins
from raysweep.spec import Job, parse_job
from raysweep.train.loop import make_optimizer


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CPU_BATCH = 8  # examples per timed batch on a CPU: a ResNet-50 update of 1,024 would take minutes and ~100 GB


def measure(job_dict: dict, in_shape: list, classes: int, batches: int = 5, on_gpu: bool = False) -> dict:
    """Seconds per training update (one rank's share of train.batch_size) and per evaluated example, after
    one warm-up batch of each; the device and its name. `on_gpu`: Ray gave this task a GPU — if torch sees
    none, that is the answer ({"error": ...}), not a slow CPU measurement. On a CPU the batches are at most
    CPU_BATCH examples and the update time is scaled to the rank's batch (time per example is flat there)."""
    if on_gpu and not torch.cuda.is_available():
        import socket

        return {"error": f"Ray gave a GPU on {socket.gethostname()} but torch sees no CUDA device there (the "
                         f"driver, CUDA_VISIBLE_DEVICES, or a CPU build of torch): trials and actors would run on "
                         f"its CPUs"}
    job: Job = parse_job(job_dict, "job from driver")
    load_plugins(job.plugins)
    device = pick_device(job.eval.device)
    model = build_model(job.model, tuple(in_shape), classes, seed=0).to(device)
    channels_last = job.train.channels_last and device.type == "cuda" and len(in_shape) == 3
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    per_rank = max(1, job.train.batch_size // job.resources.workers)
    timed = per_rank if device.type == "cuda" else min(per_rank, CPU_BATCH)
    eval_batch = job.eval.batch_size if device.type == "cuda" else min(job.eval.batch_size, CPU_BATCH)
    batches = batches if device.type == "cuda" else min(batches, 2)
    g = torch.Generator().manual_seed(0)

    def batch(n: int):
        x, y = (t.to(device) for t in example_batch(model, tuple(in_shape), classes, n, g))
        return (x.to(memory_format=torch.channels_last) if channels_last else x), y

    opt = make_optimizer(job, list(model.parameters()), job.train.lr, job.train.weight_decay)
    per_example, autocast = loss_fn(job.train.loss), job.train.amp and device.type == "cuda"
    x, y = batch(timed)
    model.train()
    for i in range(batches + 1):
        if i == 1:
            _sync(device)
            t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = training_loss(model(x), y, per_example)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    train_s = (time.perf_counter() - t) / batches * per_rank / timed
    x, _ = batch(eval_batch)
    model.eval()
    low = device.type == "cuda" and (job.eval.precision == "bf16" or (job.eval.precision == "auto" and job.train.amp))
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
        for i in range(batches + 1):
            if i == 1:
                _sync(device)
                t = time.perf_counter()
            model(x)
        _sync(device)
    eval_s = (time.perf_counter() - t) / batches / eval_batch
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return {"device": str(device), "name": name, "train_update_s": train_s, "per_rank_batch": per_rank,
            "eval_example_s": eval_s, "threads": torch.get_num_threads(), "timed_batch": timed}
