"""The line kinds: θ(α) = (1−α)·θ_a + α·θ_b at every α of the sweep's grid, per pair of checkpoints —

    init_to_final    θ_0 → θ_T per replicate (I1; I4 with a narrow window; I7 with α outside [0, 1])
    step_to_final    θ_t → θ_T for every checkpoint t (I2, and its barriers table: I3)
    final_to_final   θ_T(i) → θ_T(j), i < j (I5; `align` matches θ_T(j)'s hidden units first)
    random_to_final  θ_r → θ_T, θ_r an init drawn with its own seed × `random_scale` (I6)
    instability      child 1 → child 2 of each replicate spawned at each `spawn_steps` (Frankle et al. 2020)

One item per (pair, α-chunk); rows in the curves and barriers tables; a line may carry `sharpness`
(kinds/sharpness.py). The evaluation is evaluate/line.py's; the figures are the papers'.
"""
from __future__ import annotations

import dataclasses
import math

from raysweep.errors import NotTrainedError, SpecError
from raysweep.evaluate.line import evaluate_item
from raysweep.evaluate.lm_groups import model_type
from raysweep.io import paths
from raysweep.io.manifests import read_manifests
from raysweep.io.runs import locator
from raysweep.io.schemas import POINT_SCHEMA
from raysweep.kinds.base import Context
from raysweep.kinds.sharpness import sharpness_items, spectrum_figures
from raysweep.spec import Job, SweepSpec, sweep_hash
from raysweep.spec.job import graph_only
from raysweep.work.items import (
    RANDOM_SEED_OFFSET,
    RANDOM_STEP,
    Endpoint,
    LineItem,
    check_size,
    chunk_size,
    chunks,
    line_key,
)
from raysweep.work.kinds import Kind, kind, register, sweep_folder
from raysweep.work.stored import stored_ref
from raysweep.work.tasks import Child


def pairs(ctx: Context, sweep: SweepSpec) -> list[tuple[Endpoint, Endpoint]]:
    """(θ_a, θ_b) pairs of a line sweep, in an order that keeps each θ_b's work together."""
    ks, finals = sorted(ctx.finals), ctx.finals
    if sweep.kind == "init_to_final":
        return [(ctx.endpoint(k, 0), finals[k]) for k in ks]
    if sweep.kind == "step_to_final":
        return [(ctx.endpoint(k, s), finals[k]) for k in ks for s in sorted(ctx.manifests[k])]
    if sweep.kind == "final_to_final":
        return [(finals[i], finals[j]) for i in ks for j in ks if i < j]
    if sweep.kind == "random_to_final":
        return [(random_endpoint(ctx.store, ctx.job, k, sweep.random_scale), finals[k]) for k in ks]
    if sweep.kind == "instability":
        children = spawned(ctx, sweep)
        return [(children[(k, s, 0)], children[(k, s, 1)]) for k in ks for s in sweep.spawn_steps]
    raise SpecError(f"{sweep.kind!r} is not a line sweep kind")


def line_items(ctx: Context, sweep: SweepSpec, before: list) -> list:
    """One item per (pair, α-chunk); the key names the α indices it holds, so a different chunking never skips
    an α. With `sharpness`, the sharpness items of the same pairs follow."""
    if sweep.align != "none":
        check_alignable(ctx.job, sweep, ctx.info)
    size = chunk_size(ctx.job, sweep, ctx.info)
    grid = sweep.alpha.points()
    sweep_pairs = pairs(ctx, sweep)
    check_size(before, ctx.job, len(sweep_pairs) * math.ceil(len(grid) / size))
    h, folder = sweep_hash(sweep), sweep_folder(ctx.run, sweep)
    subset = tuple(sorted(sweep.params.selected(state_names(ctx), f"sweeps.{sweep.name}.params"))) \
        if sweep.params.on else ()
    items = [LineItem(sweep.name, sweep.kind, h, key, paths.point_file(folder, key), a, b, tuple(alphas),
                      tuple(sweep.splits), sweep.bn, sweep.bn_batches, tuple(sweep.metrics), sweep.align, subset,
                      sweep.hold)
             for a, b in sweep_pairs for c, alphas in enumerate(chunks(grid, size))
             for key in [line_key(a, b, c * size, c * size + len(alphas))]]
    return items + (sharpness_items(ctx, sweep, sweep_pairs) if sweep.sharpness.on else [])


def state_names(ctx: Context) -> list[str]:
    """The model's state-dict names, built on the meta device (no memory, no init)."""
    import torch

    from raysweep.models import build_model

    with torch.device("meta"):
        return list(build_model(ctx.job.model, tuple(ctx.info.in_shape), ctx.info.num_classes).state_dict())


def check_alignable(job: Job, sweep, info) -> None:
    """A sweep that aligns units needs a model whose permutation groups can be derived; say so before any work."""
    import torch

    from raysweep.evaluate.align import AlignmentError, permutation_spec
    from raysweep.models import build_model

    with torch.device("meta"):
        model = build_model(job.model, tuple(info.in_shape), info.num_classes)
    try:
        permutation_spec(model, tuple(info.in_shape))
    except AlignmentError as exc:
        raise SpecError(f"sweeps.{sweep.name}: {exc}") from None
    if model_type(model) is not None and graph_only(sweep):  # a user's model that is a transformers LM
        raise SpecError(f"sweeps.{sweep.name}: {graph_only(sweep)}")


# ----------------------------------------------------------------------------- I6: the random starting point

def random_endpoint(store, job: Job, k: int, scale: float) -> Endpoint:
    """θ_r of replicate k as the planner sees it: its path, and its sha256 once drawn ("" before)."""
    ref = stored_ref(store, paths.random_point(paths.run_dir(job.name, job.hash), k, scale))
    return Endpoint(k, RANDOM_STEP, ref.path, ref.sha256)


def draw_random_point(store, job: Job, k: int, scale: float, in_shape, num_classes) -> str:
    """θ_r: an init drawn with its own seed, parameters scaled by `scale` (G Fig 5 right); returns its sha256."""
    from raysweep.io.checkpoints import save_tensors
    from raysweep.models import build_model

    path = paths.random_point(paths.run_dir(job.name, job.hash), k, scale)
    model = build_model(job.model, in_shape, num_classes, seed=job.seed + k + RANDOM_SEED_OFFSET)
    params = {n for n, _ in model.named_parameters()}
    state = {n: (t * scale if n in params else t) for n, t in model.state_dict().items()}
    sha = save_tensors(store, path, state)
    store.write_json(paths.record(path), {"replicate": k, "scale": scale, "sha256": sha, "path": path})
    return sha


def prepare_random(job: Job, store, items: list, info) -> list:
    """I6's random points, each drawn once (seeded) and stored beside the checkpoints; the items get its sha256."""
    drawn: dict = {}
    out = []
    for it in items:
        if isinstance(it, LineItem) and it.a.step == RANDOM_STEP and not it.a.sha256:
            scale = job.sweep(it.sweep).random_scale
            key = (it.a.replicate, scale)
            if key not in drawn:
                drawn[key] = random_endpoint(store, job, it.a.replicate, scale).sha256 or draw_random_point(
                    store, job, it.a.replicate, scale, info.in_shape, info.num_classes)
            it = dataclasses.replace(it, a=dataclasses.replace(it.a, sha256=drawn[key]))
        out.append(it)
    return out


# ------------------------------------------------------------------ instability: the children of each replicate

def check_spawn_steps(sweep, k: int, steps) -> None:
    """Children are spawned from stored checkpoints before the last one; say which exist if not."""
    bad = [s for s in sweep.spawn_steps if s not in steps or s == max(steps)]
    if bad:
        raise SpecError(f"sweeps.{sweep.name}.spawn_steps {bad} are not checkpoints of replicate {k} before its last "
                        f"step; spawn from the stored ones: {sorted(steps)[:-1]} (or add them to train.steps)")


def children_todo(job: Job, store, trained: list[int]) -> list:
    """The instability children of the `trained` replicates not trained yet."""
    sweeps = [sw for sw in job.sweeps if sw.kind == "instability"]
    for k in trained if sweeps else []:
        for sw in sweeps:
            check_spawn_steps(sw, k, read_manifests(store, job, k))
    steps = sorted({s for sw in sweeps for s in sw.spawn_steps})
    return [task for k in trained for s in steps for c in (0, 1) if not (task := Child(k, s, c)).done(store, job)]


def spawned(ctx: Context, sweep) -> dict:
    """(replicate, spawn step, child) -> the trained child's final Endpoint; NotTrainedError naming what is
    missing (`raysweep run` trains them)."""
    out, missing_ = {}, []
    for k, steps in ctx.manifests.items():
        check_spawn_steps(sweep, k, steps)
        total = max(steps)
        for s in sweep.spawn_steps:
            for c in (0, 1):
                if not ctx.store.exists(paths.child_done(ctx.run, k, s, c)):
                    missing_.append((k, s, c))
                    continue
                m = ctx.store.read_json(paths.child_manifest(ctx.run, k, s, c, total))
                out[(k, s, c)] = Endpoint(k, s, paths.child_checkpoint(ctx.run, k, s, c, total), m["sha256"], c)
    if missing_:
        raise NotTrainedError(
            f"{len(missing_)} instability children of {ctx.job.name} are not trained yet (e.g. "
            f"replicate {missing_[0][0]}, spawned at step {missing_[0][1]}); `raysweep run "
            f"{locator(ctx.job, ctx.store)}` trains them")
    return out


# ---------------------------------------------------------------------------------------- evaluation, counts

def evaluate(evaluator, job: Job, item: LineItem):
    return evaluate_item(evaluator, job, item)


def count(job: Job, sweep, info, steps: list) -> dict:
    """`raysweep show`'s numbers of a line sweep: pairs, α, work items, evaluations, examples forwarded."""
    pairs_ = kind(sweep.kind).pairs(job.replicates, len(steps), len(sweep.spawn_steps))
    alphas = sweep.alpha.points()
    return {"pairs": pairs_, "alphas": len(alphas), "alpha_range": [alphas[0], alphas[-1]],
            "splits": list(sweep.splits), "work_items": pairs_ * len(chunks(alphas, chunk_size(job, sweep, info))),
            "evaluations": pairs_ * len(alphas) * len(sweep.splits),
            "examples_forwarded": pairs_ * len(alphas) * sum(sweep.split_sizes(info.sizes))}


# -------------------------------------------------------------------------------------------------- figures

def figures(job: Job, sweep, t: dict) -> list:
    """The papers' figure of a line sweep (F Fig 1–3, G Fig 4–7, LMC), its sharpness spectrum, and for an
    init → final line of fine-tunes over two test distributions WiSE-FT's."""
    import polars as pl

    from raysweep.report.charts import band_chart, barrier_chart, instability_chart, line_of, per_step_chart
    from raysweep.report.figures import Figure, grid_text, over

    c = t["curves"].filter(pl.col("sweep") == sweep.name)
    if c.is_empty():
        return spectrum_figures(job, sweep, t)
    alphas = sorted(set(c["alpha"]))
    tag, line, paper = line_of(job, sweep, alphas)
    heading, whom, split = f"{tag} — {line}: {sweep.name}", over(job, sweep, c), sweep.splits[0]
    b = t["barriers"].filter(pl.col("sweep") == sweep.name, pl.col("split") == split)
    out = []
    if sweep.kind == "step_to_final":
        out.append(Figure(f"{paper}-{sweep.name}", heading,
                          f"Mean {split} loss and error (over {whom}) along the line from each checkpoint θ_t of the "
                          f"schedule to θ_T, one curve per t ({grid_text(alphas)}; F Fig 2).",
                          [per_step_chart(c.filter(pl.col("split") == split), m, f"{sweep.name}: {m}")
                           for m in ("loss", "error")]))
        out.append(Figure(f"F-fig3-{sweep.name}-barriers", f"I3 — barrier height vs t: {sweep.name}",
                          f"Largest rise of the {split} loss and error along each line θ_t → θ_T, mean ± std over "
                          f"{whom}, against t on a log₂ axis (t = 0 at the left; F Fig 3).",
                          [barrier_chart(b, m, f"max increase of {m}") for m in ("loss", "error")]))
    elif sweep.kind == "instability":
        ck = t["checkpoints"]
        top = int(ck["step"].max()) if ck.height else max(sweep.spawn_steps)
        out.append(Figure(f"LMC-instability-{sweep.name}", f"LMC — instability vs spawn step k: {sweep.name}",
                          f"Two children of each replicate spawned from θ_k and trained on to T with different data "
                          f"orders; instability is the {split} loss/error barrier between them (max along the line − "
                          f"mean of its ends), mean ± std over {whom}, against k on a log₂ axis (Frankle, "
                          f"Dziugaite, Roy & Carbin 2020).", [instability_chart(b, m, top) for m in ("error", "loss")]))
        out.append(Figure(f"LMC-curves-{sweep.name}", f"LMC — the lines between the children: {sweep.name}",
                          f"Mean {split} loss and error along the line from child 1 to child 2, one curve per spawn "
                          f"step k ({grid_text(alphas)}).",
                          [per_step_chart(c.filter(pl.col("split") == split), m, f"{sweep.name}: {m}")
                           for m in ("loss", "error")]))
    else:
        aligned = {"none": "",
                   "weights": " θ_T(j)'s hidden units were matched to θ_T(i)'s first (weight matching).",
                   "activations": " θ_T(j)'s hidden units were matched to θ_T(i)'s first, by the correlation of their "
                                  "activations (activation matching)."}[sweep.align]
        spread = "" if "no spread" in whom else ", mean ± 1 std (clipped at 0)"
        x = "t (along the curve)" if sweep.kind == "curve" else "α"
        ppl = "perplexity_mean" in c.columns  # a language model's line: its perplexity too
        out.append(Figure(f"{paper}-{sweep.name}", heading,
                          f"Loss{', perplexity' if ppl else ''} and error along {line.split(',')[0]}{spread} over "
                          f"{whom}, {grid_text(alphas)}, splits {'/'.join(sweep.splits)}; the last panel has a log y "
                          f"axis." + aligned,
                          [band_chart(c, m, m, x_title=x) for m in ("loss", "error") + (("perplexity",) if ppl else ())]
                          + [band_chart(c, "loss", "loss (log y)", log_y=True, x_title=x)]))
    return out + spectrum_figures(job, sweep, t) + wise_figures(job, sweep, c)


def wise_figures(job: Job, sweep, c) -> list:
    """WiSE-FT (Wortsman et al. 2022): accuracy on two test distributions along the line from the pretrained
    model to each fine-tune — for an init → final sweep of fine-tunes (train.init_from) over two such splits."""
    from raysweep.report.charts import wise_chart
    from raysweep.report.figures import Figure, over

    shown = [s for s in sweep.splits if s != "train"]
    if sweep.kind != "init_to_final" or len(shown) < 2 or c.is_empty() or not job.train.init_from:
        return []
    return [Figure(f"WiSE-FT-{sweep.name}", f"WiSE-FT — {shown[0]} vs {shown[1]} along α: {sweep.name}",
                   f"Accuracy (1 − error, mean over {over(job, sweep, c)}) on {shown[0]} against {shown[1]} at every α "
                   f"of the line from the pretrained model (α = 0, train.init_from) to each fine-tune (α = 1), as "
                   f"Wortsman et al. (2022) plot robust fine-tuning.", [wise_chart(c, shown[0], shown[1])])]


# ----------------------------------------------------------------------------------------------- the records

_LINE = dict(family="line", folder="line", table="curves", item=LineItem, plan=line_items, evaluate=evaluate,
             schema=POINT_SCHEMA, count=count, figures=figures, module=__name__)
register(Kind("init_to_final", **_LINE, pairs=lambda r, c, s: r, tag="I1/I4/I7"))
register(Kind("step_to_final", **_LINE, pairs=lambda r, c, s: r * c, tag="I2/I3"))
register(Kind("final_to_final", **_LINE, pairs=lambda r, c, s: r * (r - 1) // 2, tag="I5"))
register(Kind("random_to_final", **_LINE, pairs=lambda r, c, s: r, tag="I6", prepare=prepare_random))
register(Kind("instability", **_LINE, pairs=lambda r, c, s: r * s, tag="LMC"))
