"""Merged models, evaluated like any point: uniform and greedy soups of the replicates' finals (Wortsman
et al. 2022, "Model soups"), and task arithmetic θ_pre + λ·Σ_k (θ_k − θ_pre) (Ilharco et al. 2023)."""
from __future__ import annotations

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
    evaluator.set_metrics(())
    base = evaluator.endpoint(item.base[0].path, item.base[0].sha256)
    states = [evaluator.endpoint(e.path, e.sha256) for e in item.members]
    tau = task_vectors(base, states)
    ks = [e.replicate for e in item.members]
    rows = []
    for lam in item.lambdas:
        evaluator.set_weights(add_task_vectors(base, tau, lam))
        rows += _rows(evaluator, job, item, "task_arithmetic", ks, item.splits, float(lam))
    return pa.Table.from_pylist(rows, schema=SCHEMA)
