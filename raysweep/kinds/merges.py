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
    """A task-vector merge over its parameter (λ, density, drop rate, t), each split (a language model's
    perplexity too), the uniform soup and the best single fine-tune as rules; with the job's first merge sweep,
    each method's best point."""
    import polars as pl

    from raysweep.report.charts import merge_chart
    from raysweep.report.figures import Figure

    merges = t.get("merges")
    if merges is None or merges.is_empty():
        return []
    first = next(s for s in job.sweeps if s.kind in AXES or s.kind == "soup")
    summary = best_figures(job, merges) if sweep.name == first.name else []
    part = merges.filter(pl.col("sweep") == sweep.name)
    if sweep.kind not in AXES or part.is_empty():
        return summary
    x, what = AXES[sweep.kind]
    trim = f" (trim {sweep.trim})" if sweep.kind == "ties" else ""
    metrics = ("loss", "error") + (("perplexity",) if "perplexity" in merges.columns else ())
    singles = merges.filter(pl.col("merge") == "single")
    best = singles.group_by("split").agg(*[pl.col(m).min() for m in metrics]) if singles.height else None
    return summary + [Figure(
        f"MERGE-{sweep.name}", f"Merges — {sweep.kind}{trim}: {sweep.name}",
        f"{', '.join(metrics).capitalize()} of the merged model of the {job.replicates} replicates' finals against "
        f"{x}: {what}; the dashed rule is the uniform soup (the plain average) and the dotted one the best single "
        f"fine-tune, where the job has a soup sweep. A task split's error is 1 − its accuracy.",
        [merge_chart(part, merges.filter(pl.col("merge") == "uniform"), m, x, best) for m in metrics])]


def best_points(job: Job, merges):
    """Each merge method's best point by loss on its sweep's first split: method, its parameters, the split and
    every metric there (soups: the uniform and greedy soups and the best single fine-tune, as methods)."""
    import polars as pl

    rows = []
    for (sweep, merge), part in merges.group_by("sweep", "merge", maintain_order=True):
        split = job.sweep(sweep).splits[0]
        top = part.filter(pl.col("split") == split).sort("loss").head(1).to_dicts()[0]
        name = "best single fine-tune" if merge == "single" else merge if merge in ("uniform", "greedy") else sweep
        point = (f"replicate {top['members']}" if merge == "single" else f"members {top['members']}"
                 if top["lam"] is None else f"{AXES.get(merge, ('value',))[0]} = {top['lam']:g}"
                 + (f", pair {top['members']}" if merge == "slerp" else ""))
        rows.append({"method": name, "point": point, **{k: v for k, v in top.items() if k not in ("lam",)}})
    return pl.DataFrame(rows).unique("method", keep="first", maintain_order=True) if rows else pl.DataFrame()


def best_figures(job: Job, merges) -> list:
    from raysweep.report.charts import best_points_chart
    from raysweep.report.figures import Figure

    best = best_points(job, merges)
    if best.height < 2:
        return []
    metrics = ("loss", "perplexity") if "perplexity" in best.columns else ("loss", "error")
    return [Figure("MERGE-best", "Merges — each method's best point",
                   f"The lowest-loss point of every merge sweep on its first split "
                   f"({', '.join(sorted(set(best['split'])))}), with its parameter: λ, density, drop rate or t, or the "
                   f"soup's members.",
                   [best_points_chart(best.select("method", "point", *metrics), m) for m in metrics])]


_MERGE = dict(family="merge", folder="merge", table="merges", item=MergeItem, plan=merge_items, schema=MERGE_SCHEMA,
              pairs=lambda r, c, s: 1, build_table=merges_table, count=count, figures=figures, module=__name__)
register(Kind("soup", **_MERGE, evaluate=soup_item, tag="soup"))
register(Kind("task_arithmetic", **_MERGE, evaluate=task_merge_item, tag="TA"))
register(Kind("ties", **_MERGE, evaluate=task_merge_item, tag="TIES"))
register(Kind("dare", **_MERGE, evaluate=task_merge_item, tag="DARE"))
register(Kind("dare_ties", **_MERGE, evaluate=task_merge_item, tag="DARE-TIES"))
register(Kind("slerp", **{**_MERGE, "pairs": lambda r, c, s: r * (r - 1) // 2}, evaluate=slerp_item, tag="SLERP"))
