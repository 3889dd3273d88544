"""T4 random planes and T5 line-and-random planes (G App. D, Fig 21-22): the loss on a 2-D grid
θ = c + a·d1 + b·d2 around a replicate's weights, and the SGD trajectory projected onto the plane;
T3 path surfaces (G App. C, Fig 15-20): J(θ_0 + a·(θ_T − θ_0) + b·D·v(t*(a))), D = ‖θ_T − θ_0‖,
v(t) the unit residual of checkpoint t off the line and t*(a) the checkpoint whose α(t)/D is
nearest a; the trajectory drawn at (α(t)/D, β(t)/D).

Directions are drawn from a seed (job seed, replicate, sweep hash) and stored beside the
checkpoints, so a rerun or another node evaluates exactly the same plane.
  random_plane:    c = θ_T; d1, d2 Gaussian, each scaled to ‖θ_T − θ_0‖ (or filter-normalised:
                   every output filter of d scaled to that filter's norm in θ_T, biases and BN 0).
  line_and_random: c = θ_0; d1 = θ_T − θ_0 (a = 1 is θ_T); d2 Gaussian, orthogonal to d1, same norm.
  a kind's own:    c and the directions its `compute` gives (kinds/pca_plane.py: the path's principal
                   directions; an "evr" tensor stored with them is reported as an "axes" row).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import torch

from raysweep.errors import CheckpointError
from raysweep.evaluate.trajectory import stream_projection
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors, save_tensors
from raysweep.io.schemas import SURFACE_SCHEMA
from raysweep.spec import Job, SweepSpec
from raysweep.work.items import Endpoint, PlaneItem, Ref
from raysweep.work.stored import stored_ref


def direction_seed(job: Job, k: int, sweep_h: str) -> int:
    return int(hashlib.sha256(f"{job.seed}/{k}/{sweep_h}".encode()).hexdigest()[:8], 16)


def make_directions(sweep: SweepSpec, theta0: dict, thetaT: dict, params: list[str], seed: int) -> dict:
    """{"center.<n>", "d1.<n>", "d2.<n>"} tensors for the parameters `params` (others stay at c)."""
    g = torch.Generator().manual_seed(seed)
    diff = {n: thetaT[n].double() - theta0[n].double() for n in params}
    scale = torch.sqrt(sum((d ** 2).sum() for d in diff.values()))
    gauss = lambda: {n: torch.randn(thetaT[n].shape, generator=g, dtype=torch.float64) for n in params}  # noqa: E731

    def norm(d):
        return torch.sqrt(sum((v ** 2).sum() for v in d.values()))

    if sweep.kind == "line_and_random":
        d1, d2 = diff, gauss()
        dot = sum((d2[n] * d1[n]).sum() for n in params) / sum((d1[n] ** 2).sum() for n in params)
        d2 = {n: d2[n] - dot * d1[n] for n in params}  # orthogonal to the line
        d2 = {n: v * scale / norm(d2) for n, v in d2.items()}
        center = theta0
        # BN running statistics move with a along the line too, so (a, b) = (1, 0) is θ_T itself
        d1 = {**d1, **{n: thetaT[n].double() - theta0[n].double() for n in thetaT
                       if n not in params and thetaT[n].is_floating_point()}}
    else:
        d1, d2 = gauss(), gauss()
        if sweep.filter_norm:
            d1, d2 = (_filter_normalise(d, thetaT) for d in (d1, d2))
        else:
            d1, d2 = ({n: v * scale / norm(d) for n, v in d.items()} for d in (d1, d2))
        center = thetaT
    out = {f"center.{n}": t for n, t in center.items()}
    out.update({f"d1.{n}": d1[n].float() for n in d1})
    out.update({f"d2.{n}": d2[n].float() for n in params})
    return out


def _filter_normalise(d: dict, theta: dict) -> dict:
    out = {}
    for n, v in d.items():
        if v.dim() <= 1:  # biases and BN parameters: no direction (Li et al. 2018)
            out[n] = torch.zeros_like(v)
        else:
            t = theta[n].double()
            dims = tuple(range(1, v.dim()))
            out[n] = v * (t.norm(dim=dims, keepdim=True) / (v.norm(dim=dims, keepdim=True) + 1e-10))
    return out


def drawn_directions(store, job: Job, sweep: SweepSpec, h: str, k: int, ends: tuple[Endpoint, ...],
                     params: list[str]) -> dict:
    """T4/T5's plane of replicate k: directions drawn from its seed (make_directions) between θ_0 and θ_T."""
    t0, tT = (load_tensors(store, e.path, e.sha256) for e in (ends[0], ends[-1]))
    return make_directions(sweep, t0, tT, params, direction_seed(job, k, h))


def ensure_directions(store, job: Job, sweep: SweepSpec, h: str, k: int, ends: tuple[Endpoint, ...],
                      params: list[str], compute=drawn_directions) -> Ref:
    """Compute (`compute(store, job, sweep, h, k, ends, params)`: drawn, or a kind's own such as the PCA
    plane's) and store replicate k's plane, once; prepare step, never the planner. Returns its ref."""
    path = paths.plane(paths.run_dir(job.name, job.hash), k, sweep.name, h)
    ref = stored_ref(store, path)
    if not ref.sha256:
        directions = compute(store, job, sweep, h, k, ends, params)
        sha = save_tensors(store, path, directions)
        store.write_json(paths.record(path), {"path": path, "sha256": sha, "replicate": k})
        ref = Ref(path, sha)
    return ref


def plane_item(evaluator, job: Job, item: PlaneItem) -> pa.Table:
    """Loss and error at every (a, b) of the item's rows; the first item also projects the path."""
    evaluator.set_metrics(())  # planes record loss and error
    plane = load_tensors(evaluator.store, item.ref.path, item.ref.sha256)
    dev, names = evaluator.device, evaluator.names
    center = [plane[f"center.{n}"].to(dev) for n in names]
    d1 = [plane.get(f"d1.{n}", torch.zeros_like(plane[f"center.{n}"])).to(dev) for n in names]
    d2 = [plane.get(f"d2.{n}", torch.zeros_like(plane[f"center.{n}"])).to(dev) for n in names]
    common = {"job": job.name, "hash": job.hash, "sweep": item.sweep, "replicate": item.replicate}
    rows = []
    for a in item.alphas:
        for b in item.betas:
            evaluator.set_weights(center)
            evaluator.add_direction(d1, a)
            evaluator.add_direction(d2, b)
            for r in evaluator.evaluate(tuple(item.splits)):
                rows.append({**common, "kind": "grid", "step": -1, "a": float(a), "b": float(b), **r})
    if item.first:
        rows += _projected_path(evaluator, item, plane, common)
        if "evr" in plane:  # a PCA plane: the fraction of the path's variance along d1 and d2, as a and b
            evr = plane["evr"].tolist()
            rows.append({**common, "kind": "axes", "step": -1, "a": evr[0], "b": evr[1], "split": "", "loss": None,
                         "error": None})
    return pa.Table.from_pylist(rows, schema=SURFACE_SCHEMA)


def _projected_path(evaluator, item: PlaneItem, plane: dict, common: dict) -> list[dict]:
    """Each checkpoint's (a, b): least squares of θ_t − c onto [d1, d2], over the parameters."""
    names = [n for n in evaluator.param_names if f"d1.{n}" in plane]
    flat = lambda prefix, t: np.concatenate([t[f"{prefix}{n}"].double().reshape(-1).numpy() for n in names])  # noqa: E731
    c, basis = flat("center.", plane), np.stack([flat("d1.", plane), flat("d2.", plane)], 1)
    out = []
    for e in item.endpoints:
        theta = flat("", load_tensors(evaluator.store, e.path, e.sha256))
        (a, b), *_ = np.linalg.lstsq(basis, theta - c, rcond=None)
        out.append({**common, "kind": "path", "step": e.step, "a": float(a), "b": float(b), "split": "",
                    "loss": None, "error": None})
    return out


def ensure_path_info(store, job: Job, sweep: SweepSpec, h: str, k: int, endpoints: tuple[Endpoint, ...],
                     params: list[str]) -> Ref:
    """T3's path: α(t), β(t) of every checkpoint (G App. B), computed once per replicate (prepare step)
    by streaming the checkpoints (three parameter vectors in memory at a time), stored as JSON."""
    path = paths.path_info(paths.run_dir(job.name, job.hash), k, sweep.name, h)
    ref = stored_ref(store, path)
    if not ref.sha256:
        proj = stream_projection(store, endpoints, params)
        data = json.dumps({"steps": [e.step for e in endpoints], "alpha": [r["alpha"] for r in proj],
                           "beta": [r["beta"] for r in proj], "distance": proj[-1]["alpha"]}).encode()
        store.write_bytes(path, data)
        sha = hashlib.sha256(data).hexdigest()
        store.write_json(paths.record(path), {"sha256": sha})
        ref = Ref(path, sha)
    return ref


def read_path_info(store, ref: Ref) -> dict:
    data = store.read_bytes(ref.path)
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise CheckpointError(f"T3 path {store.url(ref.path)} does not match its sha256; delete it and rerun")
    return json.loads(data)


def nearest_checkpoints(info: dict, alphas: list[float]) -> list[int]:
    """t*(a) for each a: the checkpoint off the line whose α(t)/D is nearest a (index into info's steps)."""
    dist = info["distance"]
    off = [i for i, b in enumerate(info["beta"]) if b > 1e-9 * dist] or list(range(len(info["steps"])))
    return [min(off, key=lambda j: abs(info["alpha"][j] / dist - a)) for a in alphas]


def path_surface_item(evaluator, job: Job, item: PlaneItem) -> pa.Table:
    evaluator.set_metrics(())
    info = read_path_info(evaluator.store, item.ref)
    eps = {e.step: e for e in item.endpoints}
    t0 = evaluator.endpoint(item.ends[0].path, item.ends[0].sha256)
    tT = evaluator.endpoint(item.ends[1].path, item.ends[1].sha256)
    dist = info["distance"]
    common = {"job": job.name, "hash": job.hash, "sweep": item.sweep, "replicate": item.replicate}
    rows = []
    for a, i in zip(item.alphas, nearest_checkpoints(info, list(item.alphas))):
        step, alpha, beta = info["steps"][i], info["alpha"][i], info["beta"][i]
        tt = evaluator.endpoint(eps[step].path, eps[step].sha256)
        # D·v(t) = D·(θ_t − θ_0 − α(t)·u)/β(t), u = (θ_T − θ_0)/D, on the parameters only
        scale = dist / beta if beta > 0 else 0.0
        dv = [(x - x0 - (alpha / dist) * (xT - x0)) * scale for x, x0, xT in zip(tt, t0, tT)]
        for b in item.betas:
            evaluator.set_weights(t0)
            evaluator.lerp_towards(tT, a)
            evaluator.add_direction(dv, b, params_only=True)
            for res in evaluator.evaluate(tuple(item.splits)):
                rows.append({**common, "kind": "grid", "step": step, "a": a, "b": float(b), **res})
    if item.first:
        rows += [{**common, "kind": "path", "step": s, "a": al / dist, "b": be / dist, "split": "", "loss": None,
                  "error": None} for s, al, be in zip(info["steps"], info["alpha"], info["beta"])]
    return pa.Table.from_pylist(rows, schema=SURFACE_SCHEMA)
