"""The rehearsal's projection: the job's real model timed where a trial would run (train/measure.py), scaled
to the real plan (its iterations and the examples its sweeps forward) over the devices the cluster has now."""
from __future__ import annotations

import math

from raysweep.cluster.policy import capacity, largest_node, trial_resources
from raysweep.run.probes import where_the_work_runs
from raysweep.spec import Job


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


def project(job: Job, info, c: dict, nodes: list[dict], waiting=lambda text: None) -> tuple[dict | None, str]:
    """(the numbers, a line): the real run's training and evaluation time on this cluster's devices, and its
    device-hours, from a few timed batches of the real model; input pipelines and stragglers not counted.
    The timed run asks for what a trial holds, fitted to this machine as training fits it; where no node has
    that (nor can the autoscaler add one), it is not measured and the line says why. `waiting(text)` is told
    what the stage waits on."""
    from raysweep.train.measure import measure  # torch

    gpus = sum(n["gpus"] for n in nodes)
    res = job.resources
    if res.accelerator == "gpu" and not gpus:
        return None, ("skipped: the job runs on GPUs and none is in the cluster now (an autoscaler may add them); "
                      f"`raysweep show {job.name}` estimates from published rates")
    on_gpu = res.accelerator != "cpu" and gpus > 0
    cap = capacity()
    cpus = trial_resources(job, cap)["cpu"] / max(res.workers, 1) if not on_gpu else min(res.cpus_per_trial, 1.0)
    biggest = largest_node(nodes, cap)
    if cpus > biggest["cpus"] or (on_gpu and biggest["gpus"] < 1):
        want = f"{cpus:g} CPUs{' and a GPU' if on_gpu else ''}"
        return None, (f"NOT measured: no node has {want} (largest: {biggest['cpus']:g} CPUs, {biggest['gpus']:g} "
                      f"GPUs), the resources one trial of {job.name} holds (resources.cpus_per_trial)")
    waiting(f"a node with {cpus:g} CPU(s){' and 1 GPU' if on_gpu else ''} to time {job.model.name} on "
            f"(`ray status` shows what the cluster has)")
    m = where_the_work_runs(measure, job.to_dict(), list(info.in_shape), info.num_classes, 5, on_gpu, cpus=cpus,
                            gpus=1 if on_gpu else 0)
    if "error" in m:
        return {"error": m["error"]}, f"NOT measured: {m['error']}"
    devices = gpus if on_gpu else max(1.0, sum(n["cpus"] for n in nodes) // cpus)
    kind = "GPU" if on_gpu else "CPU slot"
    ranks = res.workers
    train_device_s = job.replicates * c["iterations"] * m["train_update_s"] * ranks
    waves = math.ceil(job.replicates * ranks / devices)  # replicates at once, as the devices allow
    train_wall = waves * c["iterations"] * m["train_update_s"]
    eval_device_s = c["examples_forwarded"] * m["eval_example_s"]
    eval_wall = eval_device_s / devices
    out = {**m, "devices": devices, "train_wall_s": train_wall, "eval_wall_s": eval_wall,
           "device_hours": (train_device_s + eval_device_s) / 3600}
    out["text"] = (f"{job.model.name} on {m['name']}: {m['per_rank_batch'] / m['train_update_s']:,.0f} training and "
                   f"{1 / m['eval_example_s']:,.0f} evaluation examples/s per {kind}; the real run ≈ "
                   f"{_hours(train_wall)} of training + {_hours(eval_wall)} of evaluation on this cluster's "
                   f"{devices:g} {kind}(s), {out['device_hours']:,.1f} {kind}-hours (compute only: input "
                   f"pipelines and stragglers not counted)")
    return out, out["text"]
