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
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import torch

from raysweep import paths
from raysweep.checkpoints import load_tensors, save_tensors
from raysweep.spec import Job, SweepSpec

SURFACE_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("replicate", pa.int32()),
    ("kind", pa.string()), ("step", pa.int64()), ("a", pa.float64()), ("b", pa.float64()),
    ("split", pa.string()), ("loss", pa.float64()), ("error", pa.float64()),
])


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
    else:
        d1, d2 = gauss(), gauss()
        if sweep.filter_norm:
            d1, d2 = (_filter_normalise(d, thetaT) for d in (d1, d2))
        else:
            d1, d2 = ({n: v * scale / norm(d) for n, v in d.items()} for d in (d1, d2))
        center = thetaT
    out = {f"center.{n}": t for n, t in center.items()}
    out.update({f"d1.{n}": d1[n].float() for n in params})
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


def plane_path(run: str, k: int, sweep: SweepSpec, h: str) -> str:
    return f"{paths.replicate_dir(run, k)}/plane_{sweep.name}_{h}.safetensors"


def ensure_directions(store, job: Job, sweep: SweepSpec, h: str, k: int, manifests: dict, params: list[str]) -> dict:
    """The stored plane of replicate k (drawn and written on first use); returns its item fields."""
    run = paths.run_dir(job.name, job.hash)
    path = plane_path(run, k, sweep, h)
    meta = path.replace(".safetensors", ".json")
    if not store.exists(meta):
        m0, mT = manifests[min(manifests)], manifests[max(manifests)]
        t0, tT = load_tensors(store, m0["path"], m0["sha256"]), load_tensors(store, mT["path"], mT["sha256"])
        sha = save_tensors(store, path, make_directions(sweep, t0, tT, params, direction_seed(job, k, h)))
        store.write_json(meta, {"path": path, "sha256": sha, "replicate": k})
    return store.read_json(meta)


def plane_item(evaluator, job: Job, item: dict) -> pa.Table:
    """Loss and error at every (a, b) of the item's rows; the first item also projects the path."""
    plane = load_tensors(evaluator.store, item["plane"]["path"], item["plane"]["sha256"])
    dev = evaluator.device
    center = [plane[f"center.{n}"].to(dev) for n in evaluator.names]
    d1 = [plane.get(f"d1.{n}", torch.zeros_like(plane[f"center.{n}"])).to(dev) for n in evaluator.names]
    d2 = [plane.get(f"d2.{n}", torch.zeros_like(plane[f"center.{n}"])).to(dev) for n in evaluator.names]
    fl = evaluator.float_idx
    common = {"job": job.name, "hash": job.hash, "sweep": item["sweep"], "replicate": item["replicate"]}
    rows = []
    for a in item["alphas"]:
        for b in item["betas"]:
            torch._foreach_copy_(evaluator.targets, center)
            torch._foreach_add_([evaluator.targets[i] for i in fl], [d1[i] for i in fl], alpha=float(a))
            torch._foreach_add_([evaluator.targets[i] for i in fl], [d2[i] for i in fl], alpha=float(b))
            for r in evaluator.evaluate_current(tuple(item["splits"])):
                rows.append({**common, "kind": "grid", "step": -1, "a": float(a), "b": float(b), **r})
    if item["first"]:
        rows += _projected_path(evaluator, item, plane, common)
    return pa.Table.from_pylist(rows, schema=SURFACE_SCHEMA)


def _projected_path(evaluator, item: dict, plane: dict, common: dict) -> list[dict]:
    """Each checkpoint's (a, b): least squares of θ_t − c onto [d1, d2], over the parameters."""
    names = [n for n in evaluator.param_names if f"d1.{n}" in plane]
    flat = lambda prefix, t: np.concatenate([t[f"{prefix}{n}"].double().reshape(-1).numpy() for n in names])  # noqa: E731
    c, basis = flat("center.", plane), np.stack([flat("d1.", plane), flat("d2.", plane)], 1)
    out = []
    for e in item["endpoints"]:
        theta = flat("", load_tensors(evaluator.store, e["path"], e["sha256"]))
        (a, b), *_ = np.linalg.lstsq(basis, theta - c, rcond=None)
        out.append({**common, "kind": "path", "step": e["step"], "a": float(a), "b": float(b), "split": "",
                    "loss": None, "error": None})
    return out


def path_surface_rows(store, job: Job, sweep: SweepSpec, manifests: dict, params: list[str]) -> tuple[list, dict]:
    """Per a of the grid: the checkpoint t*(a) and its (α, β); and the path (α(t)/D, β(t)/D)."""
    from raysweep.trajectory import flat_parameters, projection

    steps = sorted(manifests)
    thetas = [flat_parameters(load_tensors(store, manifests[s]["path"], manifests[s]["sha256"]), params)
              for s in steps]
    proj = projection(thetas)
    dist = proj[-1]["alpha"]
    off = [i for i, r in enumerate(proj) if r["beta"] > 1e-9 * dist]  # checkpoints that leave the line
    rows = []
    for a in sweep.alpha.points():
        pool = off or list(range(len(steps)))
        i = min(pool, key=lambda j: abs(proj[j]["alpha"] / dist - a))
        m = manifests[steps[i]]
        rows.append({"a": a, "step": steps[i], "path": m["path"], "sha256": m["sha256"],
                     "alpha": proj[i]["alpha"], "beta": proj[i]["beta"]})
    path = {"steps": steps, "a": [r["alpha"] / dist for r in proj], "b": [r["beta"] / dist for r in proj],
            "distance": dist}
    return rows, path


def path_surface_item(evaluator, job: Job, item: dict) -> pa.Table:
    ends = item["ends"]
    t0 = evaluator.endpoint(ends[0]["path"], ends[0]["sha256"])
    tT = evaluator.endpoint(ends[1]["path"], ends[1]["sha256"])
    pidx = evaluator.param_idx
    fl = evaluator.float_idx
    dist = item["path_info"]["distance"]
    common = {"job": job.name, "hash": job.hash, "sweep": item["sweep"], "replicate": item["replicate"]}
    rows = []
    for r in item["rows"]:
        tt = evaluator.endpoint(r["path"], r["sha256"])
        # D·v(t) = D·(θ_t − θ_0 − α(t)·u)/β(t), u = (θ_T − θ_0)/D, on the parameters only
        scale = dist / r["beta"] if r["beta"] > 0 else 0.0
        dv = {i: (tt[i] - t0[i] - (r["alpha"] / dist) * (tT[i] - t0[i])) * scale for i in pidx}
        for b in item["betas"]:
            torch._foreach_copy_(evaluator.targets, t0)
            torch._foreach_lerp_([evaluator.targets[i] for i in fl], [tT[i] for i in fl], float(r["a"]))
            torch._foreach_add_([evaluator.targets[i] for i in pidx], [dv[i] for i in pidx], alpha=float(b))
            for res in evaluator.evaluate_current(tuple(item["splits"])):
                rows.append({**common, "kind": "grid", "step": r["step"], "a": r["a"], "b": float(b), **res})
    if item["first"]:
        p = item["path_info"]
        rows += [{**common, "kind": "path", "step": s, "a": a, "b": b, "split": "", "loss": None, "error": None}
                 for s, a, b in zip(p["steps"], p["a"], p["b"])]
    return pa.Table.from_pylist(rows, schema=SURFACE_SCHEMA)
