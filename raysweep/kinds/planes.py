"""The plane kinds: the loss on an (a, b) grid of `alpha` × `beta` around a replicate's weights, with the SGD
path projected onto it (G App. C–D) —

    random_plane      θ_T + a·d1 + b·d2, d1 and d2 random (`filter_norm = true`: Li et al. 2018's directions)  T4
    line_and_random   θ_0 + a·(θ_T − θ_0) + b·d2, d2 random and orthogonal to the line                       T5
    path_surface      θ_0 + a·(θ_T − θ_0) + b·D·v(t*(a)), v(t) the unit residual of the checkpoint nearest a    T3

Per replicate, rows of the grid in chunks (`plane_items`); what the items reference — the directions, or T3's
path — is prepared once, seeded, beside the checkpoints (`prepare_planes`). Rows in the `surface` table; each
plane drawn as a heat map with iso-lines and as a 3-D surface. `plane_kind` registers a plane of another kind's
making (kinds/pca_plane.py: its own directions, the same plumbing).
"""
from __future__ import annotations

import dataclasses
import math

from raysweep.io import paths
from raysweep.io.schemas import SURFACE_SCHEMA
from raysweep.kinds.base import Context
from raysweep.spec import Job, SweepSpec, sweep_hash
from raysweep.work.items import ITEM_FLOP, PlaneItem, chunks, grid_key
from raysweep.work.kinds import Kind, register, sweep_folder
from raysweep.work.stored import stored_ref


def plane_items(ctx: Context, sweep: SweepSpec, before: list) -> list[PlaneItem]:
    """Per replicate: rows of the (a, b) grid in chunks; the first chunk also projects the path. The plane's
    directions (or T3's path) are referenced, written later by `prepare_planes`."""
    betas = tuple(sweep.beta.points())
    if sweep.chunk:
        size = sweep.chunk
    else:  # rows of the grid per item: ~ITEM_FLOP of work, like the line sweeps
        from raysweep.models import forward_flops  # torch

        per_row = forward_flops(ctx.job.model, tuple(ctx.info.in_shape), ctx.info.num_classes) * len(betas) * sum(
            sweep.split_sizes(ctx.info.sizes))
        size = max(1, min(len(sweep.alpha.points()), math.ceil(ITEM_FLOP / max(per_row, 1))))
    h, folder = sweep_hash(sweep), sweep_folder(ctx.run, sweep)
    t3 = sweep.kind == "path_surface"
    whole = t3 or sweep.kind in WHOLE_PATH  # every item needs the whole trajectory
    out = []
    for k in sorted(ctx.manifests):
        eps = ctx.trajectory(k)
        ref = stored_ref(ctx.store, (paths.path_info if t3 else paths.plane)(ctx.run, k, sweep.name, h))
        for c, alphas in enumerate(chunks(sweep.alpha.points(), size)):
            key = grid_key(k, "path" if t3 else "plane", c * size, c * size + len(alphas))
            out.append(PlaneItem(sweep.name, sweep.kind, h, key, paths.point_file(folder, key), k, tuple(alphas), betas,
                                 tuple(sweep.splits), c == 0, (eps[0], eps[-1]), eps if (c == 0 or whole) else (),
                                 ref))
    return out


def prepare_planes(job: Job, store, items: list, info) -> list:
    """Each plane's directions (or T3's path) computed once per (sweep, replicate), seeded, stored beside the
    checkpoints; the items get their sha256."""
    from raysweep.evaluate.planes import ensure_directions, ensure_path_info
    from raysweep.models import build_model

    params, done, out = None, {}, []
    for it in items:
        if isinstance(it, PlaneItem) and not it.ref.sha256:
            if params is None:
                model = build_model(job.model, tuple(info.in_shape), info.num_classes)
                params = [n for n, _ in model.named_parameters()]
            key = (it.sweep, it.replicate)
            if key not in done:
                spec, compute = job.sweep(it.sweep), DIRECTIONS.get(it.sweep_kind)
                done[key] = (ensure_path_info(store, job, spec, it.sweep_hash, it.replicate, it.endpoints, params)
                             if it.sweep_kind == "path_surface" else
                             ensure_directions(store, job, spec, it.sweep_hash, it.replicate,
                                               it.endpoints if compute else it.ends, params,
                                               **({"compute": compute} if compute else {})))
            it = dataclasses.replace(it, ref=done[key])
        out.append(it)
    return out


DIRECTIONS: dict = {}  # kind -> compute(store, job, sweep, h, k, trajectory, params): a plane of its own making
WHOLE_PATH: set = set()  # kinds whose every item carries the whole trajectory (a plane made from the path)


def plane_item(evaluator, job: Job, item: PlaneItem):
    from raysweep.evaluate.planes import plane_item as evaluate  # torch

    return evaluate(evaluator, job, item)


def path_surface_item(evaluator, job: Job, item: PlaneItem):
    from raysweep.evaluate.planes import path_surface_item as evaluate  # torch

    return evaluate(evaluator, job, item)


def surface_table(store, job: Job, exclude=frozenset()):
    from raysweep.analysis.aggregate import surface

    return surface(store, job, exclude)


def count(job: Job, sweep, info, steps: list) -> dict:
    grid = len(sweep.alpha.points()) * len(sweep.beta.points())
    evals = job.replicates * grid * len(sweep.splits)
    return {"trajectory": True, "grid": grid, "work_items": job.replicates, "evaluations": evals,
            "examples_forwarded": evals * sum(sweep.split_sizes(info.sizes)) // len(sweep.splits)}


def plane_figures(job: Job, sweep, t: dict) -> list:
    """The plane of the sweep's first replicate: a heat map with labelled iso-lines and the SGD path, and the
    same as a 3-D surface (its axes titled, the path on it, the named points marked)."""
    import polars as pl

    from raysweep.report.charts import surface3d_chart, surface_chart
    from raysweep.report.figures import Figure, surface_view

    surf = t["surface"]
    part = surf.filter(pl.col("sweep") == sweep.name) if surf.height else surf
    if part.is_empty():
        return []
    part = part.filter(pl.col("replicate") == part["replicate"].min())
    tag, paper, text, marks = LOOKS[sweep.kind]
    log_height = t.get("log_height", False)
    return [Figure(f"{paper}-{sweep.name}", f"{tag} — {sweep.name} (replicate {part['replicate'][0]})",
                   f"Loss and error on {text}, with labelled iso-lines (contourpy; loss levels evenly in log space) "
                   f"and the SGD path projected in red.", [surface_chart(part, "loss"), surface_chart(part, "error")]),
            Figure(f"{paper}-{sweep.name}-3d", f"{tag} — {sweep.name} as a surface (replicate {part['replicate'][0]})",
                   f"Loss and error on {text}, as heights over the plane, seen from a fixed angle"
                   f"{'; heights on a log scale' if log_height else ''} (Li et al. 2018, Fig 1): a and b on the base's "
                   f"front edges, the metric on the vertical axis, the SGD path on the surface in red and "
                   f"{', '.join(marks)} marked. The HTML report's 3-D view turns with the mouse.",
                   [surface3d_chart(part, m, log=log_height and m == "loss", marks=marks) for m in ("loss", "error")],
                   views3d=[surface_view(part, m, log_height and m == "loss") for m in ("loss", "error")])]


# (tag, figure name prefix, what the plane is, where its named points lie on (a, b))
LOOKS: dict[str, tuple[str, str, str, dict]] = {
    "random_plane": ("T4", "G-fig21", "a random 2-D plane through θ_T (G App. D Fig 21)", {"θ_T": (0.0, 0.0)}),
    "line_and_random": ("T5", "G-fig22", "the plane of the line θ_0 → θ_T (a) and a random direction orthogonal to "
                                         "it (b; G Fig 22)", {"θ_0": (0.0, 0.0), "θ_T": (1.0, 0.0)}),
    "path_surface": ("T3", "G-fig15", "a along θ_0 → θ_T in units of ‖θ_T − θ_0‖, b along the direction in which the "
                                      "checkpoint nearest a leaves the line (G App. C Fig 15–20)",
                     {"θ_0": (0.0, 0.0), "θ_T": (1.0, 0.0)}),
}


def plane_kind(name: str, tag: str, paper: str, text: str, marks: dict, module: str, directions=None,
               evaluate=plane_item, of_path: bool = False) -> Kind:
    """Register a plane kind: its look, and (`directions`) how its plane is computed when not drawn at random;
    `of_path`: every item carries the whole trajectory (its plane comes from the path)."""
    LOOKS[name] = (tag, paper, text, marks)
    if directions is not None:
        DIRECTIONS[name] = directions
    if of_path:
        WHOLE_PATH.add(name)
    return register(Kind(name, family="plane", folder="surface", table="surface",
                         item=PlaneItem, plan=plane_items, evaluate=evaluate, schema=SURFACE_SCHEMA, tag=tag,
                         prepare=prepare_planes, build_table=surface_table, count=count, figures=plane_figures,
                         module=module))


plane_kind("random_plane", *LOOKS["random_plane"], module=__name__)
plane_kind("line_and_random", *LOOKS["line_and_random"], module=__name__)
plane_kind("path_surface", *LOOKS["path_surface"], module=__name__, evaluate=path_surface_item)
