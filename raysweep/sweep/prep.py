"""Prepare: write what planned items only referenced — I6's random points, T4/T5 plane directions,
T3 path projections — each once, seeded, beside the checkpoints. Runs in the driver before
evaluation; read-only commands never call it."""
from __future__ import annotations

import dataclasses

from raysweep.data.registry import dataset_info
from raysweep.evaluate.planes import ensure_directions, ensure_path_info
from raysweep.io import paths
from raysweep.io.checkpoints import save_tensors
from raysweep.io.store import Store
from raysweep.models import build_model
from raysweep.spec import Job
from raysweep.sweep.planner import random_endpoint
from raysweep.work.items import RANDOM_SEED_OFFSET, RANDOM_STEP, LineItem, PlaneItem


def draw_random_point(store: Store, job: Job, k: int, scale: float, in_shape, num_classes) -> str:
    """θ_r: an init drawn with its own seed, parameters scaled by `scale` (G Fig 5 right); returns its sha256."""
    path = paths.random_point(paths.run_dir(job.name, job.hash), k, scale)
    model = build_model(job.model, in_shape, num_classes, seed=job.seed + k + RANDOM_SEED_OFFSET)
    params = {n for n, _ in model.named_parameters()}
    state = {n: (t * scale if n in params else t) for n, t in model.state_dict().items()}
    sha = save_tensors(store, path, state)
    store.write_json(paths.record(path), {"replicate": k, "scale": scale, "sha256": sha, "path": path})
    return sha


def prepare(job: Job, store: Store, items: list, info=None) -> list:
    """Write what the items need that the planner only referenced: I6's random points, T4/T5 plane
    directions, T3 path projections (each once, seeded, stored beside the checkpoints). Returns the
    items with every sha256 filled in. Runs in the driver before evaluation; `status` never calls it."""
    if info is None:  # the dataset's shape as read here (the driver passes what the workers see)
        info = dataset_info(job.data, standard_if_missing=True, store=store)
    params = None
    drawn: dict = {}
    out = []
    for it in items:
        if isinstance(it, LineItem) and it.a.step == RANDOM_STEP and not it.a.sha256:
            k, spec = it.a.replicate, job.sweep(it.sweep)
            key = (k, spec.random_scale)
            if key not in drawn:
                drawn[key] = random_endpoint(store, job, k, spec.random_scale).sha256 or draw_random_point(
                    store, job, k, spec.random_scale, info.in_shape, info.num_classes)
            it = dataclasses.replace(it, a=dataclasses.replace(it.a, sha256=drawn[key]))
        if isinstance(it, PlaneItem) and not it.ref.sha256:
            if params is None:
                params = [
                    n for n, _ in build_model(job.model, tuple(info.in_shape), info.num_classes).named_parameters()
                ]
            key = (it.sweep, it.replicate)
            if key not in drawn:
                spec = job.sweep(it.sweep)
                drawn[key] = (ensure_path_info(store, job, spec, it.sweep_hash, it.replicate, it.endpoints, params)
                              if it.sweep_kind == "path_surface" else
                              ensure_directions(store, job, spec, it.sweep_hash, it.replicate,
                                                it.endpoints if it.sweep_kind == "pca_plane" else it.ends, params))
            it = dataclasses.replace(it, ref=drawn[key])
        out.append(it)
    return out
