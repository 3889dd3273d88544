"""Merged models, evaluated like any point: uniform and greedy soups of the replicates' finals (Wortsman
et al. 2022, "Model soups"), task arithmetic θ_pre + λ·Σ_k (θ_k − θ_pre) (Ilharco et al. 2023), and the two
merges mergekit users reach for most: TIES (Yadav et al. 2023: trim each task vector to its largest
entries, elect a sign per entry, average the agreeing ones) and DARE (Yu et al. 2024: drop each entry of
each task vector with probability p, rescale the rest by 1/(1 − p), average), DARE's drops with TIES' sign
election (dare_ties), and SLERP between two fine-tunes (Shoemake 1985, as mergekit merges two models). Their
λ, density, drop rate or t is the sweep's α grid; the merges table keeps it in its `lam` column."""
from __future__ import annotations

import math
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
    return [_stacked(b, [s[i] for s in states]).sum(0).reshape(b.shape) if b.is_floating_point() else None
            for i, b in enumerate(base)]


def add_task_vectors(base: list[torch.Tensor], tau: list[torch.Tensor | None], lam: float) -> list[torch.Tensor]:
    """θ_pre + λ·τ, in the base's dtypes; integer buffers from the base."""
    return [merge_tensor("task_arithmetic", b, [], lam, "", 0, tau=t) for b, t in zip(base, tau)]


TRIMS = ("tensor", "global")


def ties_merge(base: list[torch.Tensor], states: list[list[torch.Tensor]], density: float, lam: float = 1.0,
               trim: str = "tensor") -> list[torch.Tensor]:
    """TIES-merging (Yadav et al. 2023, Alg. 1): trim each task vector τ_k = θ_k − θ_pre to its largest entries,
    elect each entry's sign from the sum of the trimmed τ̂_k, average the τ̂_k that are non-zero with that sign
    (disjoint mean); θ = θ_pre + λ·τ. Float64, then the base's dtypes; integer buffers from the base. Two trims:

    - "tensor" (mergekit's ties, the default): tensor by tensor, the k = max(1, ⌊density·n⌋) entries of largest
      magnitude (all of them at density 1); an entry whose sum is 0 is elected positive. One tensor at a time in
      memory, and what merges of language models are compared against.
    - "global" (the paper's code, ties-merging's topk_values_mask): over the whole task vector at once, the entries
      whose magnitude reaches its (N − ⌊density·N⌋)-th smallest (ties at the threshold kept); an entry whose sum is
      0 takes the sign of the sum of all elected signs (resolve_zero_signs "majority"). Holds every task vector
      whole while it trims."""
    if trim not in TRIMS:
        raise ValueError(f"trim must be one of {TRIMS}, got {trim!r}")
    if trim == "tensor":  # tensor by tensor (merge_tensor)
        return [merge_tensor("ties", b, [s[i] for s in states], density, "", 0, lam=lam) for i, b in enumerate(base)]
    floats = [i for i, b in enumerate(base) if b.is_floating_point()]
    taus = {i: _stacked(base[i], [s[i] for s in states]) for i in floats}
    trimmed = _trim_global(taus, density)
    sums = {i: t.sum(0) for i, t in trimmed.items()}
    elected = {i: torch.sign(v) for i, v in sums.items()}
    majority = torch.sign(sum(e.sum() for e in elected.values())) if elected else torch.tensor(0.0)
    signs = {i: torch.where(e == 0, majority, e) for i, e in elected.items()}
    out = list(base)
    for i in floats:
        out[i] = _added(base[i], lam * _disjoint_mean(trimmed[i], signs[i]))
    return out


def _stacked(base: torch.Tensor, finals: list[torch.Tensor]) -> torch.Tensor:
    """The task vectors of one tensor, flattened, one row each, in float64 (on the base's device)."""
    b = base.double().reshape(-1)
    return torch.stack([f.to(base.device).double().reshape(-1) - b for f in finals])


def _added(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """θ_pre + δ of one tensor, in float64, then the base's dtype."""
    return (base.double() + delta.reshape(base.shape)).to(base.dtype)


def merge_tensor(kind: str, base: torch.Tensor, finals: list[torch.Tensor], value: float, name: str, seed: int,
                 lam: float = 1.0, tau: torch.Tensor | None = None) -> torch.Tensor:
    """One tensor of a task-vector merge — each kind here is tensor by tensor (TIES with its per-tensor trim):
    task arithmetic θ_pre + λ·Σ_k τ_k (value = λ; `tau`: the Σ when the caller holds it), TIES (value = the
    density), DARE and dare_ties (value = the drop rate; `name` and `seed` draw the masks). The inputs may live
    elsewhere (memory-mapped on the host): they are brought to the base's device one at a time. Integer buffers
    are the base's."""
    if not base.is_floating_point():
        return base
    if kind == "task_arithmetic":
        total = tau if tau is not None else _stacked(base, finals).sum(0)
        return _added(base, value * total)
    if kind == "ties":
        trimmed = _trim_tensor(_stacked(base, finals), value)
        return _added(base, lam * _disjoint_mean(trimmed, _elected(trimmed)))
    if kind in ("dare", "dare_ties"):
        kept = torch.stack([_dropped(base, f.to(base.device), seed, name, k, value) for k, f in enumerate(finals)])
        return _added(base, kept.mean(0) if kind == "dare" else _disjoint_mean(kept, _elected(kept)))
    raise ValueError(f"{kind!r} is not a task-vector merge (task_arithmetic, ties, dare, dare_ties)")


def _elected(taus: torch.Tensor) -> torch.Tensor:
    """TIES' sign election over stacked task vectors (rows): the sign of each entry's sum, a sum of 0 positive."""
    return torch.where(taus.sum(0) >= 0, 1.0, -1.0).double()


def _disjoint_mean(taus: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """The mean over stacked task vectors (rows) of each entry's non-zero values that have the elected sign."""
    agree = (torch.sign(taus) == sign) & (taus != 0)
    return (taus * agree).sum(0) / agree.sum(0).clamp(min=1)


def _trim_tensor(taus: torch.Tensor, density: float) -> torch.Tensor:
    """mergekit's magnitude sparsification, per task vector (rows): its k = max(1, ⌊density·n⌋) largest |entries|
    (of equal ones, the first: a stable sort, so every device and run keeps the same)."""
    n = taus.shape[1]
    if density >= 1:
        return taus
    keep = max(1, int(density * n))
    largest = torch.argsort(taus.abs(), dim=1, descending=True, stable=True)[:, :keep]
    mask = torch.zeros_like(taus, dtype=torch.bool).scatter_(1, largest, True)
    return torch.where(mask, taus, torch.zeros_like(taus))


def _trim_global(taus: dict[int, torch.Tensor], density: float) -> dict[int, torch.Tensor]:
    """The paper's trim of each whole task vector k: |τ_k| at or above its (N − ⌊density·N⌋)-th smallest value."""
    whole = torch.cat([t.abs() for t in taus.values()], dim=1)  # (replicates, N)
    n = whole.shape[1]
    kth = n - int(n * density)
    if kth <= 0:  # density 1: nothing trimmed
        return taus
    threshold = whole.kthvalue(kth, dim=1, keepdim=True).values
    return {i: torch.where(t.abs() >= threshold, t, torch.zeros_like(t)) for i, t in taus.items()}


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
    return [merge_tensor("dare", b, [s[i] for s in states], p, name, seed)
            for i, (name, b) in enumerate(zip(names, base))]


def _dropped(base: torch.Tensor, final: torch.Tensor, seed: int, name: str, k: int, p: float) -> torch.Tensor:
    """The k-th task vector of tensor `name` as DARE keeps it: its entries dropped by `dare_mask`, the rest scaled
    by 1/(1 − p); float64."""
    keep = dare_mask(seed, name, k, base.shape, p).to(base.device)
    return torch.where(keep, final.double() - base.double(), 0.0) / (1 - p)


def dare_ties_merge(base: list[torch.Tensor], states: list[list[torch.Tensor]], p: float, seed: int,
                    names: list[str]) -> list[torch.Tensor]:
    """DARE's drops with TIES' election (mergekit's dare_ties, λ = 1): each task vector's entries dropped with
    DARE's masks (the same draws as `dare_merge`) and the rest scaled by 1/(1 − p); each entry's sign elected
    from their sum (a sum of 0 elected positive); the kept entries with that sign averaged (disjoint mean)."""
    return [merge_tensor("dare_ties", b, [s[i] for s in states], p, name, seed)
            for i, (name, b) in enumerate(zip(names, base))]


SLERP_DOT = 0.9995  # mergekit's: directions closer than this are interpolated linearly


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation of one tensor from a (t = 0) to b (t = 1), as mergekit's slerp merges two models:
    sin((1−t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b, Ω the angle between the flattened tensors' directions; where
    |cos Ω| > 0.9995 the plain line (1−t)·a + t·b. Float64, then a's dtype; integer buffers from a."""
    if not a.is_floating_point():
        return a
    x, y = a.double().reshape(-1), b.double().reshape(-1)
    nx, ny = (float(v.norm()) for v in (x, y))
    cos = float(((x / (nx if nx > eps else 1.0)) * (y / (ny if ny > eps else 1.0))).sum().clamp(-1, 1))
    if abs(cos) > SLERP_DOT:
        return ((1 - t) * x + t * y).reshape(a.shape).to(a.dtype)
    omega = math.acos(cos)
    return ((math.sin((1 - t) * omega) * x + math.sin(t * omega) * y) / math.sin(omega)).reshape(a.shape).to(a.dtype)


def merged_state(kind: str, base: list[torch.Tensor], states: list[list[torch.Tensor]], value: float,
                 names: list[str], seed: int, trim: str = "tensor", tau: list | None = None) -> list[torch.Tensor]:
    """The model a task-vector merge sweep evaluates at one value of its grid (λ, the density or the drop rate):
    the one place the merge kinds are told apart (the sweep's items and `raysweep export` both call it).
    `tau`: task arithmetic's Σ_k τ_k when the caller holds it already."""
    if kind == "task_arithmetic":
        return add_task_vectors(base, tau if tau is not None else task_vectors(base, states), value)
    if kind == "ties":
        return ties_merge(base, states, value, trim=trim)
    if kind == "dare":
        return dare_merge(base, states, value, seed, names)
    if kind == "dare_ties":
        return dare_ties_merge(base, states, value, seed, names)
    raise ValueError(f"{kind!r} is not a task-vector merge (task_arithmetic, ties, dare, dare_ties)")


def merge_seed(item: MergeItem) -> int:
    """DARE's masks: seeded by the sweep's settings, so a rerun (or another actor) draws the same."""
    return int(item.sweep_hash[:8], 16)


def _rows(evaluator, job: Job, item: MergeItem, merge: str, members: list[int], splits, lam=None) -> list[dict]:
    return [{"job": job.name, "hash": job.hash, "sweep": item.sweep, "item": item.key, "merge": merge, "lam": lam,
             "members": ",".join(str(m) for m in members), "split": r["split"], "loss": r["loss"],
             "error": r["error"], "n_examples": evaluator.examples(r["split"]),
             **{name: r[name] for name in evaluator.derived}}
            for r in evaluator.evaluate(tuple(splits))]


def _table(evaluator, rows: list[dict]) -> pa.Table:
    """The item's rows; a language model's also hold perplexity and bits per byte (the evaluator's derived
    columns), which the merges table then has."""
    return pa.Table.from_pylist(rows, schema=pa.schema(list(SCHEMA) + [(n, pa.float64()) for n in evaluator.derived]))


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
    return _table(evaluator, rows)


def task_merge_item(evaluator, job: Job, item: MergeItem) -> pa.Table:
    """A task-vector merge (task arithmetic over λ, TIES over its density at λ = 1, DARE over its drop rate) at
    every value of the sweep's grid (float tensors; BatchNorm's running statistics move with the weights)."""
    evaluator.set_metrics(())
    mapped = job.eval.ends == "mapped"  # θ_pre and the fine-tunes memory-mapped on the host, never copied whole
    base = evaluator.endpoint(item.base[0].path, item.base[0].sha256, host=True)
    states = [evaluator.endpoint(e.path, e.sha256, host=True) for e in item.members]
    whole = item.sweep_kind == "ties" and item.trim == "global"  # the one merge that is not tensor by tensor
    # task arithmetic's Σ_k τ_k, once per item (float64: 8 bytes a float) — with mapped inputs, per λ and tensor
    tau = task_vectors(base, states) if item.sweep_kind == "task_arithmetic" and not mapped else None
    ks, rows, seed = [e.replicate for e in item.members], [], merge_seed(item)
    for value in item.lambdas:
        if whole:
            evaluator.set_weights(merged_state(item.sweep_kind, base, states, float(value), evaluator.names, seed,
                                               item.trim))
        else:  # each merged tensor written into the model as it is made: no merged copy of the whole model
            for i, name in enumerate(evaluator.names):
                evaluator.set_tensor(i, merge_tensor(item.sweep_kind, base[i].to(evaluator.device),
                                                     [s[i] for s in states], float(value), name, seed,
                                                     tau=tau[i] if tau is not None else None))
        rows += _rows(evaluator, job, item, item.sweep_kind, ks, item.splits, float(value))
    return _table(evaluator, rows)


def slerp_item(evaluator, job: Job, item: MergeItem) -> pa.Table:
    """SLERP from one final (t = 0) to another (t = 1) at every t of the sweep's grid."""
    evaluator.set_metrics(())
    a, b = (evaluator.endpoint(e.path, e.sha256) for e in item.members)
    ks, rows = [e.replicate for e in item.members], []
    for t in item.lambdas:
        evaluator.set_weights([slerp(x, y, float(t)) for x, y in zip(a, b)])
        rows += _rows(evaluator, job, item, "slerp", ks, item.splits, float(t))
    return _table(evaluator, rows)
