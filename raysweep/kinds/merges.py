"""The merge kinds: merged models of the replicates' finals, evaluated like any point —

    soup             every final alone, the uniform soup and the greedy soup (Wortsman et al. 2022)
    task_arithmetic  θ_pre + λ·Σ_k (θ_k − θ_pre) over the α grid as λ (Ilharco et al. 2023)
    ties             TIES (Yadav et al. 2023) over the α grid as its density (`trim`: per tensor or whole vector)
    dare             DARE (Yu et al. 2024) over the α grid as its drop rate
    dare_ties        DARE's drops with TIES' sign election (mergekit's dare_ties) over the α grid as the drop rate
    slerp            SLERP from one final to another over the α grid as t, an item per pair of finals

One item per sweep over every replicate's final (SLERP: one per pair); the task-vector merges need one θ_pre: the
replicates' shared step 0 (fine-tunes of one `train.init_from`). The merging is evaluate/merges.py's; rows in the
`merges` table, one figure per sweep against its parameter with the uniform soup as a rule.
"""
from __future__ import annotations

from raysweep.errors import SpecError
from raysweep.io import paths
from raysweep.io.schemas import MERGE_SCHEMA
from raysweep.kinds.base import Context
from raysweep.spec import Job, SweepSpec, sweep_hash
from raysweep.work.items import MergeItem
from raysweep.work.kinds import Kind, register, sweep_folder


def merge_items(ctx: Context, sweep: SweepSpec, before: list) -> list[MergeItem]:
    ks = sorted(ctx.finals)
    folder = sweep_folder(ctx.run, sweep)
    if sweep.kind == "slerp":  # two finals at a time, t over the grid
        if len(ks) < 2:
            raise SpecError(f"sweeps.{sweep.name}: SLERP runs between two fine-tunes; the job has {len(ks)} "
                            f"replicate(s): set replicates = 2 or more")
        keys = [(i, j, f"r{i}-final__r{j}-final__slerp") for n, i in enumerate(ks) for j in ks[n + 1:]]
        return [MergeItem(sweep.name, sweep.kind, sweep_hash(sweep), key, paths.point_file(folder, key),
                          (ctx.finals[i], ctx.finals[j]), (), tuple(sweep.alpha.points()), tuple(sweep.splits))
                for i, j, key in keys]
    members = tuple(ctx.finals[k] for k in ks)
    base, lambdas = (), ()
    if sweep.kind != "soup":  # task arithmetic, TIES, DARE: task vectors from one θ_pre
        starts = {ctx.endpoint(k, 0).sha256 for k in ks}
        if len(starts) != 1:
            raise SpecError(
                f"sweeps.{sweep.name}: {sweep.kind} merges the replicates' task vectors θ_k − θ_pre onto one "
                f"θ_pre, but their step-0 checkpoints differ; fine-tune every replicate from one checkpoint "
                f"(train.init_from) so that step 0 is θ_pre")
        base, lambdas = (ctx.endpoint(ks[0], 0),), tuple(sweep.alpha.points())
    key = "__".join(f"r{k}-final" for k in ks) + f"__{sweep.kind}"  # names its replicates (items.key_replicates)
    return [MergeItem(sweep.name, sweep.kind, sweep_hash(sweep), key, paths.point_file(folder, key), members, base,
                      lambdas, tuple(sweep.splits), sweep.trim)]


def soup_item(evaluator, job: Job, item: MergeItem):
    from raysweep.evaluate.merges import soup_item as evaluate  # torch

    return evaluate(evaluator, job, item)


def task_merge_item(evaluator, job: Job, item: MergeItem):
    from raysweep.evaluate.merges import task_merge_item as evaluate  # torch

    return evaluate(evaluator, job, item)


def slerp_item(evaluator, job: Job, item: MergeItem):
    from raysweep.evaluate.merges import slerp_item as evaluate  # torch

    return evaluate(evaluator, job, item)


def merges_table(store, job: Job, exclude=frozenset()):
    from raysweep.analysis.aggregate import merges

    return merges(store, job, exclude)


def count(job: Job, sweep, info, steps: list) -> dict:
    values = 1 if sweep.kind == "soup" else len(sweep.alpha.points())
    pairs = job.replicates * (job.replicates - 1) // 2 if sweep.kind == "slerp" else 1
    merged = job.replicates + 2 if sweep.kind == "soup" else values * pairs
    evals = merged * len(sweep.splits)
    return {"pairs": pairs, "alphas": values, "work_items": pairs, "evaluations": evals,
            "examples_forwarded": merged * sum(sweep.split_sizes(info.sizes))}


AXES = {"task_arithmetic": ("λ", "θ_pre + λ·Σ_k (θ_k − θ_pre) (Ilharco et al. 2023)"),
        "ties": ("density", "TIES (Yadav et al. 2023): each task vector trimmed to its largest entries, a sign elected "
                            "per entry, the agreeing entries averaged; λ = 1"),
        "dare": ("drop rate p", "DARE (Yu et al. 2024): entries of each task vector dropped with probability p, the "
                                "rest scaled by 1/(1 − p), averaged"),
        "dare_ties": ("drop rate p", "DARE's drops (Yu et al. 2024) with TIES' sign election and disjoint mean"),
        "slerp": ("t", "SLERP from one fine-tune (t = 0) to another (t = 1), tensor by tensor")}


def figures(job: Job, sweep, t: dict) -> list:
    """A task-vector merge over its parameter (λ, density, drop rate), each split, the uniform soup as a rule."""
    import polars as pl

    from raysweep.report.charts import merge_chart
    from raysweep.report.figures import Figure

    merges = t.get("merges")
    if sweep.kind not in AXES or merges is None or merges.is_empty():
        return []
    part = merges.filter(pl.col("sweep") == sweep.name)
    if part.is_empty():
        return []
    x, what = AXES[sweep.kind]
    trim = f" (trim {sweep.trim})" if sweep.kind == "ties" else ""
    return [Figure(f"MERGE-{sweep.name}", f"Merges — {sweep.kind}{trim}: {sweep.name}",
                   f"Loss and error of the merged model of the {job.replicates} replicates' finals against {x}: "
                   f"{what}; the dashed rule is the uniform soup (the plain average) where the job has one.",
                   [merge_chart(part, merges.filter(pl.col("merge") == "uniform"), m, x) for m in ("loss", "error")])]


_MERGE = dict(family="merge", folder="merge", table="merges", item=MergeItem, plan=merge_items, schema=MERGE_SCHEMA,
              pairs=lambda r, c, s: 1, build_table=merges_table, count=count, figures=figures, module=__name__)
register(Kind("soup", **_MERGE, evaluate=soup_item, tag="soup"))
register(Kind("task_arithmetic", **_MERGE, evaluate=task_merge_item, tag="TA"))
register(Kind("ties", **_MERGE, evaluate=task_merge_item, tag="TIES"))
register(Kind("dare", **_MERGE, evaluate=task_merge_item, tag="DARE"))
register(Kind("dare_ties", **_MERGE, evaluate=task_merge_item, tag="DARE-TIES"))
register(Kind("slerp", **{**_MERGE, "pairs": lambda r, c, s: r * (r - 1) // 2}, evaluate=slerp_item, tag="SLERP"))
