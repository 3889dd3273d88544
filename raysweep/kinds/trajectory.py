"""The trajectory kinds: one item per replicate's whole trajectory (every checkpoint, in step order) —

    projection     T2 (G App. B): α(t), β(t), ‖θ_t‖ of every checkpoint against the line θ_0 → θ_T
    function_map   T6 (B Fig 1–5): τ (softmax) and κ (predictions) on the first `examples` test examples at every
                   checkpoint, embedded jointly by metric MDS across replicates

Evaluated by evaluate/trajectory.py; tables `trajectory` and `function_map` (analysis/aggregate.py).
"""
from __future__ import annotations

from raysweep.io import paths
from raysweep.io.schemas import FUNCTION_SCHEMA, TRAJECTORY_SCHEMA
from raysweep.kinds.base import Context
from raysweep.spec import Job, SweepSpec, sweep_hash
from raysweep.work.items import TrajectoryItem, trajectory_key
from raysweep.work.kinds import Kind, register, sweep_folder


def trajectory_items(ctx: Context, sweep: SweepSpec, before: list) -> list[TrajectoryItem]:
    """One item per replicate: every checkpoint of its trajectory, in step order."""
    h, folder = sweep_hash(sweep), sweep_folder(ctx.run, sweep)
    return [TrajectoryItem(sweep.name, sweep.kind, h, trajectory_key(k), paths.point_file(folder, trajectory_key(k)),
                           ctx.trajectory(k), sweep.examples) for k in sorted(ctx.manifests)]


def projection_item(evaluator, job: Job, item: TrajectoryItem):
    from raysweep.evaluate.trajectory import projection_item as evaluate  # torch

    return evaluate(evaluator, job, item)


def function_item(evaluator, job: Job, item: TrajectoryItem):
    from raysweep.evaluate.trajectory import function_item as evaluate  # torch

    return evaluate(evaluator, job, item)


def trajectory_table(store, job: Job, exclude=frozenset()):
    from raysweep.analysis.aggregate import trajectory

    return trajectory(store, job, exclude)


def function_map_table(store, job: Job, exclude=frozenset()):
    from raysweep.analysis.aggregate import function_map

    return function_map(store, job, exclude)


def count(job: Job, sweep, info, steps: list) -> dict:
    forwards = job.replicates * len(steps) if sweep.kind == "function_map" else 0
    return {"pairs": 0, "alphas": 0, "trajectory": True, "work_items": job.replicates, "evaluations": forwards,
            "examples_forwarded": forwards * min(sweep.examples, info.sizes["test"])}


def projection_figures(job: Job, sweep, t: dict) -> list:
    import polars as pl

    from raysweep.report.charts import projection_chart
    from raysweep.report.figures import Figure

    traj = t["trajectory"].filter(pl.col("sweep") == sweep.name) if t["trajectory"].height else t["trajectory"]
    if not traj.height:
        return []
    ratio = traj.group_by("replicate").agg(pl.col("max_beta_over_max_norm").first())["max_beta_over_max_norm"]
    return [Figure("G-fig13-projection", "T2 — projection and residual (G App. B)",
                   f"β(t), the distance from θ_t to the line through θ_0 and θ_T, against α(t), its position along the "
                   f"line, one path per replicate. max β / max ‖θ_t‖ = {ratio.min():.3f}–{ratio.max():.3f} (G: the "
                   f"line keeps ≥ 2/3 of the norm).", [projection_chart(traj)])]


def function_figures(job: Job, sweep, t: dict) -> list:
    import polars as pl

    from raysweep.report.charts import mds_chart
    from raysweep.report.figures import Figure

    fmap = t["function_map"].filter(pl.col("sweep") == sweep.name) if t["function_map"].height else t["function_map"]
    if not fmap.height:
        return []
    return [Figure(f"B-fig1-{which}-map", f"T6 — function map of {what}",
                   f"Every replicate at every checkpoint placed by metric MDS of its {what} on the first test "
                   f"examples; colour is the epoch (red to blue), one grey line per replicate (B Fig 1–5).",
                   [mds_chart(fmap, which)])
            for which, what in (("tau", "softmax outputs τ (Euclidean)"), ("kappa", "predictions κ (Hamming)"))]


register(Kind("projection", family="trajectory", folder="trajectory", table="trajectory", item=TrajectoryItem,
              plan=trajectory_items, evaluate=projection_item, schema=TRAJECTORY_SCHEMA, tag="T2",
              build_table=trajectory_table, count=count, figures=projection_figures, module=__name__))
register(Kind("function_map", family="trajectory", folder="function_map", table="function_map", item=TrajectoryItem,
              plan=trajectory_items, evaluate=function_item, schema=FUNCTION_SCHEMA, tag="T6",
              build_table=function_map_table, count=count, figures=function_figures, module=__name__))
