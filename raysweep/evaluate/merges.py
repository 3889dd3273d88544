"""Merged models, evaluated like any point: uniform and greedy soups of the replicates' finals (Wortsman
et al. 2022, "Model soups"), task arithmetic θ_pre + λ·Σ_k (θ_k − θ_pre) (Ilharco et al. 2023), and the two
merges mergekit users reach for most: TIES (Yadav et al. 2023: trim each task vector to its largest
entries, elect a sign per entry, average the agreeing ones) and DARE (Yu et al. 2024: drop each entry of
each task vector with probability p, rescale the rest by 1/(1 − p), average). Their density and drop rate
are the sweep's α grid; the merges table keeps them in its `lam` column."""
from __future__ import annotations

import zlib

import pyarrow as pa
import torch

from raysweep.io.schemas import MERGE_SCHEMA, PROVENANCE
from raysweep.spec import Job
from raysweep.work.items import MergeItem

SCHEMA = pa.schema([f for f in MERGE_SCHEMA if f.name not in PROVENANCE])


def mean_state(states: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """The average of checkpoints, float tensors in float64 then their dtype; integer buffers from the first."""
    return [torch.stack([s[i].double() for s in states]).mean(0).to(t.dtype) if t.is_floating_point() else t
            for i, t in enumerate(states[0])]


def task_vectors(base: list[torch.Tensor], states: list[list[torch.Tensor]]) -> list[torch.Tensor | None]:
    """Σ_k (θ_k − θ_pre) in float64 for the float tensors (None for integer buffers)."""
    return [sum(s[i].double() - b.double() for s in states) if b.is_floating_point() else None
            for i, b in enumerate(base)]


def add_task_vectors(base: list[torch.Tensor], tau: list[torch.Tensor | None], lam: float) -> list[torch.Tensor]:
    """θ_pre + λ·τ, in the base's dtypes; integer buffers from the base."""
    return [(b.double() + lam * t).to(b.dtype) if t is not None else b for b, t in zip(base, tau)]


def ties_merge(base: list[torch.Tensor], states: list[list[torch.Tensor]], density: float,
               lam: float = 1.0) -> list[torch.Tensor]:
    """TIES-merging (Yadav et al. 2023, Alg. 1), tensor by tensor as mergekit does: every task vector
    τ_k = θ_k − θ_pre keeps its round(density · n) entries of largest magnitude (trim); each entry's sign is
    the sign of Σ_k of the trimmed τ̂_k (elect); the merged τ is the mean of the τ̂_k that are non-zero with
    that sign (disjoint mean); θ = θ_pre + λ·τ. Float64, then the base's dtypes; integer buffers from the base."""
    out = []
    for i, b in enumerate(base):
        if not b.is_floating_point():
            out.append(b)
            continue
        taus = torch.stack([s[i].double().reshape(-1) - b.double().reshape(-1) for s in states])
        keep = max(1, round(density * taus.shape[1]))
        mask = torch.zeros_like(taus, dtype=torch.bool).scatter_(1, taus.abs().topk(keep, dim=1).indices, True)
        trimmed = torch.where(mask, taus, torch.zeros_like(taus))
        sign = torch.sign(trimmed.sum(0))
        agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
        merged = (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)
        out.append((b.double() + lam * merged.reshape(b.shape)).to(b.dtype))
    return out


def dare_mask(seed: int, name: str, k: int, shape, p: float) -> torch.Tensor:
    """Which entries of tensor `name` of the k-th task vector DARE keeps: a generator of their own, seeded by
    (the sweep, the tensor's name, k), so any process, in any tensor order, draws the same."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode()) * 31 + k) % 2**62)
    return torch.rand(shape, generator=g) >= p


def dare_merge(base: list[torch.Tensor], states: list[list[torch.Tensor]], p: float, seed: int,
               names: list[str]) -> list[torch.Tensor]:
    """DARE (Yu et al. 2024, "Language models are Super Mario"): each entry of every task vector is dropped with
    probability p and the rest rescaled by 1/(1 − p); the merged model is θ_pre + the mean of the rescaled
    vectors (mergekit's dare_linear, normalised). p = 0 is the uniform soup."""
    out = []
    for i, (name, b) in enumerate(zip(names, base)):
        if not b.is_floating_point():
            out.append(b)
            continue
        total = torch.zeros(b.shape, dtype=torch.float64, device=b.device)
        for k, s in enumerate(states):
            keep = dare_mask(seed, name, k, b.shape, p).to(b.device)
            total += torch.where(keep, s[i].double() - b.double(), 0.0) / (1 - p)
        out.append((b.double() + total / len(states)).to(b.dtype))
    return out


def merge_seed(item: MergeItem) -> int:
    """DARE's masks: seeded by the sweep's settings, so a rerun (or another actor) draws the same."""
    return int(item.sweep_hash[:8], 16)


def _rows(evaluator, job: Job, item: MergeItem, merge: str, members: list[int], splits, lam=None) -> list[dict]:
    return [{"job": job.name, "hash": job.hash, "sweep": item.sweep, "item": item.key, "merge": merge, "lam": lam,
             "members": ",".join(str(m) for m in members), "split": r["split"], "loss": r["loss"],
             "error": r["error"], "n_examples": len(evaluator.split(r["split"])[1])}
            for r in evaluator.evaluate(tuple(splits))]


def soup_item(evaluator, job: Job, item: MergeItem) -> pa.Table:
    """Each final alone, the uniform soup, and the greedy soup: finals in order of their error on the
    selection split (the sweep's first), each kept if the soup's error there does not rise."""
    evaluator.set_metrics(())
    states = [evaluator.endpoint(e.path, e.sha256) for e in item.members]
    ks = [e.replicate for e in item.members]
    rows, select = [], item.splits[0]
    for k, state in zip(ks, states):
        evaluator.set_weights(state)
        rows += _rows(evaluator, job, item, "single", [k], item.splits)
    evaluator.set_weights(mean_state(states))
    rows += _rows(evaluator, job, item, "uniform", ks, item.splits)
    err = {r["members"]: r["error"] for r in rows if r["merge"] == "single" and r["split"] == select}
    order = sorted(range(len(ks)), key=lambda i: err[str(ks[i])])
    chosen, best = [order[0]], err[str(ks[order[0]])]
    for i in order[1:]:
        evaluator.set_weights(mean_state([states[j] for j in chosen + [i]]))
        trial = evaluator.evaluate((select,))[0]["error"]
        if trial <= best:
            chosen, best = chosen + [i], trial
    evaluator.set_weights(mean_state([states[j] for j in chosen]))
    rows += _rows(evaluator, job, item, "greedy", sorted(ks[j] for j in chosen), item.splits)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def task_arithmetic_item(evaluator, job: Job, item: MergeItem) -> pa.Table:
    """θ_pre + λ·Σ_k τ_k, τ_k = θ_k − θ_pre, at every λ of the sweep's grid (float tensors; BatchNorm's
    running statistics move with the weights)."""
    tau: list = []

    def merge(base, states, lam):
        tau[:] = tau or task_vectors(base, states)  # once per item
        return add_task_vectors(base, tau, lam)
    return _task_merge(evaluator, job, item, "task_arithmetic", merge)


def _task_merge(evaluator, job: Job, item: MergeItem, merge: str, fn) -> pa.Table:
    evaluator.set_metrics(())
    base = evaluator.endpoint(item.base[0].path, item.base[0].sha256)
    states = [evaluator.endpoint(e.path, e.sha256) for e in item.members]
    ks, rows = [e.replicate for e in item.members], []
    for value in item.lambdas:
        evaluator.set_weights(fn(base, states, float(value)))
        rows += _rows(evaluator, job, item, merge, ks, item.splits, float(value))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def ties_item(evaluator, job: Job, item: MergeItem) -> pa.Table:
    """TIES at every density of the sweep's grid (λ = 1, the paper's default)."""
    return _task_merge(evaluator, job, item, "ties", lambda base, states, d: ties_merge(base, states, d))


def dare_item(evaluator, job: Job, item: MergeItem) -> pa.Table:
    """DARE at every drop rate of the sweep's grid."""
    seed = merge_seed(item)
    return _task_merge(evaluator, job, item, "dare",
                       lambda base, states, p: dare_merge(base, states, p, seed, evaluator.names))
