"""Trajectory analyses over stored checkpoints (Goodfellow et al. 2015 App. B; Breuel 2015): T2 projection &
residual and T6 τ/κ function maps. Work items run through the same planner, Ray Data stage and Store as the
line sweeps; each item covers one replicate's whole trajectory.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from raysweep.io.checkpoints import load_tensors
from raysweep.io.schemas import FUNCTION_SCHEMA, TRAJECTORY_SCHEMA
from raysweep.spec import Job
from raysweep.work.items import Endpoint, TrajectoryItem


def flat_parameters(tensors: dict[str, torch.Tensor], names: list[str]) -> np.ndarray:
    """The parameters (not BN running statistics) as one float64 vector, in a fixed order."""
    return np.concatenate([tensors[n].double().reshape(-1).numpy() for n in names])


def projection(thetas: list[np.ndarray], end: np.ndarray | None = None) -> list[dict]:
    """G App. B: u = (θ_T − θ_0)/‖θ_T − θ_0‖, α(t) = (θ_t − θ_0)·u, β(t) = ‖θ_t − θ_0 − α(t)u‖.
    θ_T is the last of `thetas` unless `end` is given (G Fig 11 keeps walking past its solution)."""
    theta0, thetaT = thetas[0], thetas[-1] if end is None else end
    u = thetaT - theta0
    u = u / np.linalg.norm(u)
    out = []
    for th in thetas:
        d = th - theta0
        a = float(d @ u)
        out.append({"alpha": a, "beta": float(np.linalg.norm(d - a * u)), "norm": float(np.linalg.norm(th)),
                    "distance": float(np.linalg.norm(d))})
    return out


def stream_projection(store, endpoints: tuple[Endpoint, ...], params: list[str]) -> list[dict]:
    """G App. B's α(t), β(t), ‖θ_t‖ of every endpoint (θ_0 first, θ_T last), reading one checkpoint at a
    time: θ_0, θ_T and the current θ_t are the only parameter vectors held."""
    load = lambda e: flat_parameters(load_tensors(store, e.path, e.sha256), params)  # noqa: E731
    theta0, thetaT = load(endpoints[0]), load(endpoints[-1])
    u = thetaT - theta0
    u /= np.linalg.norm(u)
    out = []
    for e in endpoints:
        th = load(e) if e is not endpoints[0] and e is not endpoints[-1] else (
            theta0 if e is endpoints[0] else thetaT)
        d = th - theta0
        a = float(d @ u)
        out.append({"alpha": a, "beta": float(np.linalg.norm(d - a * u)), "norm": float(np.linalg.norm(th)),
                    "distance": float(np.linalg.norm(d))})
    return out


def projection_item(evaluator, job: Job, item: TrajectoryItem) -> pa.Table:
    eps = item.endpoints
    proj = stream_projection(evaluator.store, eps, evaluator.param_names)
    rows = [{"job": job.name, "hash": job.hash, "sweep": item.sweep, "replicate": e.replicate,
             "step": e.step, "sha256": e.sha256, **r} for e, r in zip(eps, proj)]
    return pa.Table.from_pylist(rows, schema=TRAJECTORY_SCHEMA)


@torch.no_grad()
def function_item(evaluator, job: Job, item: TrajectoryItem) -> pa.Table:
    """B: τ(θ) = softmax outputs and κ(θ) = predictions on the first `examples` test samples."""
    rows = []
    for e in item.endpoints:
        evaluator.set_weights(evaluator.endpoint(e.path, e.sha256))
        probs = evaluator.probabilities("test", item.examples)
        rows.append({"job": job.name, "hash": job.hash, "sweep": item.sweep, "replicate": e.replicate,
                     "step": e.step, "tau": probs.reshape(-1).cpu().numpy(),
                     "kappa": probs.argmax(1).to(torch.int16).cpu().numpy(), "sha256": e.sha256})
    return pa.Table.from_pylist(rows, schema=FUNCTION_SCHEMA)
