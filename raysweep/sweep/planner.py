"""The planner: every work item of a job's sweeps, from what is stored. Pure: it reads manifests
and prepared files' records, and writes nothing (``prep.prepare`` writes what items reference)."""
from __future__ import annotations

import math

from raysweep.data import dataset_info
from raysweep.io import paths
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.spec import PLANE_KINDS, TRAJECTORY_KINDS, Job, SweepSpec, sweep_hash
from raysweep.sweep.items import (ITEM_FLOP, RANDOM_STEP, Endpoint, NotTrainedError, _check_size, chunk_size, chunks,
                                  grid_key, line_key, trajectory_key)


def random_endpoint(store: Store, job: Job, k: int, scale: float) -> Endpoint:
    """θ_r of replicate k as the planner sees it: its path, and its sha256 once drawn ("" before).
    Reads only; `prepare` draws it."""
    path = paths.random_point(paths.run_dir(job.name, job.hash), k, scale)
    meta = path.replace(".safetensors", ".json")
    try:
        sha = store.read_json(meta)["sha256"] if store.exists(meta) else ""
    except (ValueError, KeyError, TypeError):
        sha = ""
    return Endpoint(k, RANDOM_STEP, path, sha if isinstance(sha, str) else "")


def pairs(sweep: SweepSpec, finals: dict[int, Endpoint], manifests: dict[int, dict[int, dict]],
          randoms: dict[int, Endpoint], children: dict | None = None) -> list[tuple[Endpoint, Endpoint]]:
    """(θ_a, θ_b) pairs of a sweep, in an order that keeps each θ_b's work together."""
    def ep(k, step):
        m = manifests[k][step]
        return Endpoint(k, step, m["path"], m["sha256"])

    ks = sorted(finals)
    if sweep.kind == "init_to_final":
        return [(ep(k, 0), finals[k]) for k in ks]
    if sweep.kind == "step_to_final":
        return [(ep(k, s), finals[k]) for k in ks for s in sorted(manifests[k])]
    if sweep.kind == "final_to_final":
        return [(finals[i], finals[j]) for i in ks for j in ks if i < j]
    if sweep.kind == "random_to_final":
        return [(randoms[k], finals[k]) for k in ks]
    if sweep.kind == "instability":
        return [(children[(k, s, 0)], children[(k, s, 1)]) for k in ks for s in sweep.spawn_steps]
    raise ValueError(f"unknown sweep kind {sweep.kind!r}")


def plan(job: Job, store: Store, replicates: list[int], info=None, sweeps: list[str] | None = None) -> list[dict]:
    """Every work item of the job's sweeps (both done and missing), as JSON-able dicts."""
    run = paths.run_dir(job.name, job.hash)
    manifests = {k: read_manifests(store, job, k) for k in replicates}
    untrained = [k for k in replicates if not store.exists(paths.train_done(run, k))]
    if untrained:
        raise NotTrainedError(f"replicates {untrained} of {job.name} are not trained yet in {store.url(run)}; "
                              f"run `raysweep train {job.name}` (or `raysweep run`) first")
    finals = {k: Endpoint(k, max(m), m[max(m)]["path"], m[max(m)]["sha256"]) for k, m in manifests.items()}
    info = info or dataset_info(job.data, standard_if_missing=True)
    items = []
    for sweep in job.sweeps:
        if sweeps and sweep.name not in sweeps:
            continue
        randoms = {}
        if sweep.kind == "random_to_final":
            randoms = {k: random_endpoint(store, job, k, sweep.random_scale) for k in replicates}
        h = sweep_hash(sweep)
        if sweep.kind in TRAJECTORY_KINDS:
            items += trajectory_items(job, sweep, h, manifests)
            continue
        if sweep.kind in PLANE_KINDS:
            items += plane_items(job, store, sweep, h, manifests, info)
            _check_size(items, job)
            continue
        if sweep.align != "none":
            _check_alignable(job, sweep, info)
        size = chunk_size(job, sweep, info)
        children = spawned(store, job, sweep, manifests) if sweep.kind == "instability" else None
        sweep_pairs = pairs(sweep, finals, manifests, randoms, children)
        _check_size(items, job, len(sweep_pairs) * math.ceil(len(sweep.alpha.points()) / size))
        for a, b in sweep_pairs:
            for c, alphas in enumerate(chunks(sweep.alpha.points(), size)):
                # the key names the α indices it holds, so a different chunking never skips an α
                key = line_key(a, b, c * size, c * size + len(alphas))
                items.append({
                    "sweep": sweep.name, "sweep_hash": h, "key": key,
                    "path": paths.point_file(run, sweep.kind, sweep.name, h, key),
                    "a": a.__dict__, "b": b.__dict__, "alphas": alphas, "splits": list(sweep.splits),
                    "bn": sweep.bn, "bn_batches": sweep.bn_batches, "metrics": list(sweep.metrics),
                    "align": sweep.align})
    return items


def trajectory_items(job: Job, sweep: SweepSpec, h: str, manifests: dict[int, dict[int, dict]]) -> list[dict]:
    """One item per replicate: every checkpoint of its trajectory, in step order."""
    run = paths.run_dir(job.name, job.hash)
    out = []
    for k in sorted(manifests):
        eps = [Endpoint(k, s, m["path"], m["sha256"]).__dict__ for s, m in sorted(manifests[k].items())]
        key = trajectory_key(k)
        out.append({"sweep": sweep.name, "sweep_hash": h, "kind": sweep.kind, "key": key,
                    "path": paths.point_file(run, sweep.kind, sweep.name, h, key), "endpoints": eps,
                    "examples": sweep.examples})
    return out


def plane_items(job: Job, store: Store, sweep: SweepSpec, h: str, manifests: dict, info) -> list[dict]:
    """Per replicate: rows of the (a, b) grid in chunks; the first chunk also projects the path. The
    plane's directions (T4/T5) or the path's projection (T3) are referenced, drawn later by `prepare`."""
    from raysweep.evaluate.planes import path_info_path, plane_path, stored_ref

    run = paths.run_dir(job.name, job.hash)
    betas = sweep.beta.points()
    if sweep.chunk:
        size = sweep.chunk
    else:  # rows of the grid per item: ~ITEM_FLOP of work, like the line sweeps
        from raysweep.models import forward_flops

        per_row = forward_flops(job.model, tuple(info.in_shape), info.num_classes) * len(betas) * sum(
            info.sizes[s] for s in sweep.splits)
        size = max(1, min(len(sweep.alpha.points()), math.ceil(ITEM_FLOP / max(per_row, 1))))
    out = []
    for k in sorted(manifests):
        eps = [Endpoint(k, s, m["path"], m["sha256"]).__dict__ for s, m in sorted(manifests[k].items())]
        ends = [eps[0], eps[-1]]
        t3 = sweep.kind == "path_surface"
        ref = (stored_ref(store, path_info_path(run, k, sweep, h)) if t3 else
               stored_ref(store, plane_path(run, k, sweep, h)))
        for c, alphas in enumerate(chunks(sweep.alpha.points(), size)):
            key = grid_key(k, "path" if t3 else "plane", c * size, c * size + len(alphas))
            item = {"sweep": sweep.name, "sweep_hash": h, "kind": "path_surface" if t3 else "plane", "key": key,
                    "replicate": k, "path": paths.point_file(run, sweep.kind, sweep.name, h, key), "alphas": alphas,
                    "betas": betas, "splits": list(sweep.splits), "first": c == 0, "ends": ends,
                    "endpoints": eps if (c == 0 or t3) else []}
            item["path_info" if t3 else "plane"] = ref
            out.append(item)
    return out


def check_spawn_steps(sweep, k: int, steps) -> None:
    """Children are spawned from stored checkpoints before the last one; say which exist if not."""
    from raysweep.spec import SpecError

    bad = [s for s in sweep.spawn_steps if s not in steps or s == max(steps)]
    if bad:
        raise SpecError(f"sweeps.{sweep.name}.spawn_steps {bad} are not checkpoints of replicate {k} before its last "
                        f"step; spawn from the stored ones: {sorted(steps)[:-1]} (or add them to train.steps)")


def spawned(store: Store, job: Job, sweep, manifests: dict) -> dict:
    """(replicate, spawn step, child) -> the trained child's final Endpoint; NotTrainedError naming
    what is missing (`raysweep run` trains them)."""
    run = paths.run_dir(job.name, job.hash)
    out, missing_ = {}, []
    for k, steps in manifests.items():
        check_spawn_steps(sweep, k, steps)
        total = max(steps)
        for s in sweep.spawn_steps:
            for c in (0, 1):
                folder = paths.child_dir(run, k, s, c)
                if not store.exists(f"{folder}/done.json"):
                    missing_.append((k, s, c))
                    continue
                m = store.read_json(f"{folder}/step_{total:08d}.json")
                out[(k, s, c)] = Endpoint(k, s, f"{folder}/step_{total:08d}.safetensors", m["sha256"], c)
    if missing_:
        raise NotTrainedError(f"{len(missing_)} instability children of {job.name} are not trained yet (e.g. replicate "
                              f"{missing_[0][0]}, spawned at step {missing_[0][1]}); `raysweep run` trains them")
    return out


def _check_alignable(job: Job, sweep, info) -> None:
    """A sweep that aligns units needs a chain model (evaluate/align.py); say so before any work."""
    import torch

    from raysweep.evaluate.align import AlignmentError, permutation_spec
    from raysweep.models import build_model
    from raysweep.spec import SpecError

    with torch.device("meta"):
        model = build_model(job.model, tuple(info.in_shape), info.num_classes)
    try:
        permutation_spec(model)
    except AlignmentError as exc:
        raise SpecError(f"sweeps.{sweep.name}: {exc}") from None


def done_paths(store: Store, job: Job) -> set[str]:
    """Paths of the items whose points are stored: item files, and items inside compacted parts."""
    from raysweep.sweep.compact import done_items, is_part

    run = paths.run_dir(job.name, job.hash)
    folders: dict[str, list[str]] = {}
    for f in store.list(paths.points_dir(run), ".parquet", recursive=True):
        folders.setdefault(f.rsplit("/", 1)[0], []).append(f)
    done: set[str] = set()
    for folder, files in folders.items():
        done |= done_items(store, folder, files) if any(is_part(f) for f in files) else set(files)
    return done


def missing(items: list[dict], store: Store, job: Job) -> list[dict]:
    done = done_paths(store, job)
    return [it for it in items if it["path"] not in done]
