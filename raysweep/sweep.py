"""Sweeps: pairs of checkpoints, α chunks, what is already stored, and the Ray Data fan-out.

A work item is one (pair, α-chunk) of one sweep. Its key is deterministic, and its rows are written
as one Parquet file named by that key, so a rerun plans only the items whose file is missing and
no row is ever stored twice.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass

import pyarrow as pa

from raysweep import paths
from raysweep.checkpoints import save_tensors
from raysweep.datasets import dataset_info
from raysweep.models import build_model
from raysweep.spec import PLANE_KINDS, TRAJECTORY_KINDS, Job, SweepSpec, sweep_hash
from raysweep.store import Store

RANDOM_STEP = -1  # step_a of I6's random starting point
RANDOM_SEED_OFFSET = 1_000_000  # random points are drawn with seed + k + this offset


class NotTrainedError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    replicate: int
    step: int  # RANDOM_STEP for a random point
    path: str
    sha256: str

    @property
    def tag(self) -> str:
        return f"r{self.replicate}-{'random' if self.step == RANDOM_STEP else f's{self.step}'}"


class ManifestError(RuntimeError):
    """A checkpoint manifest that does not parse or fails its schema; names the file and the repair."""


_MANIFEST_NAME = re.compile(r"step_(\d{8})\.json")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_manifests(store: Store, job: Job, k: int) -> dict[int, dict]:
    """step -> manifest entry of replicate k, each checked against its schema. The checkpoint path is
    derived from (job, replicate, step), never taken from the file."""
    run = paths.run_dir(job.name, job.hash)
    out = {}
    for p in store.list(paths.replicate_dir(run, k), ".json"):
        match = _MANIFEST_NAME.fullmatch(p.rsplit("/", 1)[-1])
        if not match:
            continue
        step = int(match.group(1))
        try:
            entry = json.loads(store.read_bytes(p))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(_manifest_problem(store, job, k, p, f"is not valid JSON ({exc})")) from None
        problem = ("is not a JSON object" if not isinstance(entry, dict) else
                   f"says step {entry.get('step')!r}, its name step {step}" if entry.get("step") != step
                   or isinstance(entry.get("step"), bool) else
                   f"says replicate {entry.get('replicate')!r}" if entry.get("replicate") != k else
                   "has no valid sha256" if not isinstance(entry.get("sha256"), str)
                   or not _SHA256.fullmatch(entry["sha256"]) else "")
        if problem:
            raise ManifestError(_manifest_problem(store, job, k, p, problem))
        out[step] = {**entry, "path": paths.checkpoint(run, k, step)}
    return out


def _manifest_problem(store: Store, job: Job, k: int, path: str, what: str) -> str:
    return (f"checkpoint manifest {store.url(path)} {what}: replicate {k} of {job.name} cannot be trusted. "
            f"Retrain it with `raysweep train {job.name} --replicate {k} --force` (other replicates are kept), "
            f"then rerun.")


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


def draw_random_point(store: Store, job: Job, k: int, scale: float, in_shape, num_classes) -> str:
    """θ_r: an init drawn with its own seed, parameters scaled by `scale` (G Fig 5 right); returns its sha256."""
    path = paths.random_point(paths.run_dir(job.name, job.hash), k, scale)
    model = build_model(job.model, in_shape, num_classes, seed=job.seed + k + RANDOM_SEED_OFFSET)
    params = {n for n, _ in model.named_parameters()}
    state = {n: (t * scale if n in params else t) for n, t in model.state_dict().items()}
    sha = save_tensors(store, path, state)
    store.write_json(path.replace(".safetensors", ".json"), {"replicate": k, "scale": scale, "sha256": sha,
                                                             "path": path})
    return sha


def pairs(sweep: SweepSpec, finals: dict[int, Endpoint], manifests: dict[int, dict[int, dict]],
          randoms: dict[int, Endpoint]) -> list[tuple[Endpoint, Endpoint]]:
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
    raise ValueError(f"unknown sweep kind {sweep.kind!r}")


def pair_count(kind: str, replicates: int, checkpoints: int) -> int:
    """How many (θ_a, θ_b) pairs a sweep kind has, without reading any manifest."""
    return {"init_to_final": replicates, "step_to_final": replicates * checkpoints,
            "final_to_final": replicates * (replicates - 1) // 2, "random_to_final": replicates,
            "projection": replicates, "function_map": replicates,
            "random_plane": replicates, "line_and_random": replicates, "path_surface": replicates}[kind]


ITEM_FLOP = 1e13  # automatic chunks: about this much forward work per item (~1 s on a GPU)


def chunk_size(job: Job, sweep: SweepSpec, info) -> int:
    """α per work item: the sweep's `chunk`, or (0) enough α for ~ITEM_FLOP of work, computed from
    the model and the split sizes only, so that every machine plans the same items."""
    from raysweep.models import forward_flops

    n = len(sweep.alpha.points())
    if sweep.chunk:
        return min(sweep.chunk, n)
    per_alpha = forward_flops(job.model, tuple(info.in_shape), info.num_classes) * sum(
        info.sizes[s] for s in sweep.splits)
    return max(1, min(n, math.ceil(ITEM_FLOP / max(per_alpha, 1))))


def chunks(alphas: list[float], size: int) -> list[list[float]]:
    return [alphas[i:i + size] for i in range(0, len(alphas), size)]


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
        size = chunk_size(job, sweep, info)
        sweep_pairs = pairs(sweep, finals, manifests, randoms)
        _check_size(items, job, len(sweep_pairs) * math.ceil(len(sweep.alpha.points()) / size))
        for a, b in sweep_pairs:
            for c, alphas in enumerate(chunks(sweep.alpha.points(), size)):
                # the key names the α indices it holds, so a different chunking never skips an α
                key = f"{a.tag}__{b.tag}__a{c * size:05d}-{c * size + len(alphas):05d}"
                items.append({
                    "sweep": sweep.name, "sweep_hash": h, "key": key,
                    "path": paths.point_file(run, sweep.kind, sweep.name, h, key),
                    "a": a.__dict__, "b": b.__dict__, "alphas": alphas, "splits": list(sweep.splits),
                    "bn": sweep.bn, "bn_batches": sweep.bn_batches})
    return items


MAX_ITEMS = 2_000_000  # a plan larger than this would not fit a driver's memory: refused with the number


def _check_size(items: list, job: Job, more: int = 0) -> None:
    if len(items) + more > MAX_ITEMS:
        from raysweep.spec import SpecError

        raise SpecError(f"{job.name}'s sweeps make {len(items) + more:,} work items or more, over the "
                        f"{MAX_ITEMS:,} a driver plans at once: use fewer replicates, checkpoints or α points, "
                        f"or larger sweeps.NAME.chunk.")


def trajectory_items(job: Job, sweep: SweepSpec, h: str, manifests: dict[int, dict[int, dict]]) -> list[dict]:
    """One item per replicate: every checkpoint of its trajectory, in step order."""
    run = paths.run_dir(job.name, job.hash)
    out = []
    for k in sorted(manifests):
        eps = [Endpoint(k, s, m["path"], m["sha256"]).__dict__ for s, m in sorted(manifests[k].items())]
        key = f"r{k}-trajectory"
        out.append({"sweep": sweep.name, "sweep_hash": h, "kind": sweep.kind, "key": key,
                    "path": paths.point_file(run, sweep.kind, sweep.name, h, key), "endpoints": eps,
                    "examples": sweep.examples})
    return out


def plane_items(job: Job, store: Store, sweep: SweepSpec, h: str, manifests: dict, info) -> list[dict]:
    """Per replicate: rows of the (a, b) grid in chunks; the first chunk also projects the path. The
    plane's directions (T4/T5) or the path's projection (T3) are referenced, drawn later by `prepare`."""
    from raysweep.planes import path_info_path, plane_path, stored_ref

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
            key = f"r{k}-{'path' if t3 else 'plane'}__a{c * size:05d}-{c * size + len(alphas):05d}"
            item = {"sweep": sweep.name, "sweep_hash": h, "kind": "path_surface" if t3 else "plane", "key": key,
                    "replicate": k, "path": paths.point_file(run, sweep.kind, sweep.name, h, key), "alphas": alphas,
                    "betas": betas, "splits": list(sweep.splits), "first": c == 0, "ends": ends,
                    "endpoints": eps if (c == 0 or t3) else []}
            item["path_info" if t3 else "plane"] = ref
            out.append(item)
    return out


def prepare(job: Job, store: Store, items: list[dict], info=None) -> list[dict]:
    """Write what the items need that the planner only referenced: I6's random points, T4/T5 plane
    directions, T3 path projections (each once, seeded, stored beside the checkpoints). Returns the
    items with every sha256 filled in. Runs in the driver before evaluation; `status` never calls it."""
    from raysweep.planes import ensure_directions, ensure_path_info

    info = info or dataset_info(job.data, standard_if_missing=True)
    params = None
    drawn: dict = {}
    out = []
    for it in items:
        it = dict(it)
        if "a" in it and it["a"]["step"] == RANDOM_STEP and not it["a"]["sha256"]:
            k, spec = it["a"]["replicate"], job.sweep(it["sweep"])
            key = (k, spec.random_scale)
            if key not in drawn:
                drawn[key] = random_endpoint(store, job, k, spec.random_scale).sha256 or draw_random_point(
                    store, job, k, spec.random_scale, info.in_shape, info.num_classes)
            it["a"] = {**it["a"], "sha256": drawn[key]}
        ref_key = "plane" if it.get("kind") == "plane" else "path_info" if it.get("kind") == "path_surface" else None
        if ref_key and not it[ref_key]["sha256"]:
            if params is None:
                params = [n for n, _ in build_model(job.model, tuple(info.in_shape), info.num_classes).named_parameters()]
            key = (it["sweep"], it["replicate"])
            if key not in drawn:
                spec = job.sweep(it["sweep"])
                drawn[key] = (ensure_directions(store, job, spec, it["sweep_hash"], it["replicate"], it["ends"], params)
                              if ref_key == "plane" else
                              ensure_path_info(store, job, spec, it["sweep_hash"], it["replicate"], it["endpoints"], params))
            it[ref_key] = drawn[key]
        out.append(it)
    return out


def done_paths(store: Store, job: Job) -> set[str]:
    run = paths.run_dir(job.name, job.hash)
    return set(store.list(paths.points_dir(run), ".parquet", recursive=True))


def missing(items: list[dict], store: Store, job: Job) -> list[dict]:
    done = done_paths(store, job)
    return [it for it in items if it["path"] not in done]


LINE_SCHEMA = pa.schema([
    ("job", pa.string()), ("hash", pa.string()), ("sweep", pa.string()), ("sweep_hash", pa.string()),
    ("item", pa.string()), ("replicate_a", pa.int32()), ("replicate_b", pa.int32()),
    ("step_a", pa.int64()), ("step_b", pa.int64()), ("alpha", pa.float64()), ("split", pa.string()),
    ("loss", pa.float64()), ("error", pa.float64()), ("n_examples", pa.int64()),
    ("distance", pa.float64()), ("norm_a", pa.float64()), ("bn", pa.string()),
    ("sha256_a", pa.string()), ("sha256_b", pa.string()),
])
PROVENANCE = ("node_id", "device", "gpu_ids")  # where each row was computed (cluster.provenance)
POINT_SCHEMA = pa.schema(list(LINE_SCHEMA) + [(name, pa.string()) for name in PROVENANCE])  # as stored


def evaluate_item(evaluator, job: Job, item: dict) -> pa.Table:
    """Evaluate one work item with a plain-torch Evaluator; returns its rows as an Arrow table."""
    a, b = item["a"], item["b"]
    ta = evaluator.endpoint(a["path"], a["sha256"])
    tb = evaluator.endpoint(b["path"], b["sha256"])
    distance, norm_a = evaluator.norms(ta, tb)
    rows = evaluator.evaluate_pair(ta, tb, item["alphas"], tuple(item["splits"]), item["bn"], item["bn_batches"],
                                   pair_key=f"{a['sha256']}>{b['sha256']}")
    common = {"job": job.name, "hash": job.hash, "sweep": item["sweep"], "sweep_hash": item["sweep_hash"],
              "item": item["key"], "replicate_a": a["replicate"], "replicate_b": b["replicate"],
              "step_a": a["step"], "step_b": b["step"], "distance": distance, "norm_a": norm_a,
              "bn": item["bn"], "sha256_a": a["sha256"], "sha256_b": b["sha256"]}
    full = [{**common, **r} for r in rows]
    return pa.Table.from_pylist(full, schema=LINE_SCHEMA)


def with_provenance(table: pa.Table, device) -> pa.Table:
    """Every points row says where it was computed: Ray node id, torch device, Ray's GPU ids."""
    from raysweep.cluster import provenance

    where = provenance(device)
    for name in PROVENANCE:
        table = table.append_column(name, pa.array([where[name]] * table.num_rows, pa.string()))
    return table


RETRIES = 3  # transient store errors: tries per item, with exponential backoff (1 s, 2 s, ...)


def _kind_of(exc: BaseException) -> str:
    """How an item failed: "checkpoint" (damaged or missing input: permanent until repaired), "oom"
    (out of memory: the batch is too big), "transient" (the store or the network: worth retrying),
    "error" (anything else: a bug or bad input; not retried)."""
    import torch

    from raysweep.checkpoints import CheckpointError

    if isinstance(exc, (CheckpointError, ManifestError)):
        return "checkpoint"
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in str(exc).lower():
        return "oom"
    if isinstance(exc, (OSError, pa.ArrowException, TimeoutError, ConnectionError)):
        return "transient"
    return "error"


def run_item(evaluator, job: Job, store: Store, item: dict, retries: int = RETRIES, backoff: float = 1.0) -> dict:
    """Evaluate and store one item; failures are returned (with their kind), not raised, so the sweep
    goes on. Transient store errors are retried here with backoff before the item is given up."""
    import time

    kind = item.get("kind")
    if kind == "projection":
        from raysweep.trajectory import projection_item as evaluate
    elif kind == "function_map":
        from raysweep.trajectory import function_item as evaluate
    elif kind == "plane":
        from raysweep.planes import plane_item as evaluate
    elif kind == "path_surface":
        from raysweep.planes import path_surface_item as evaluate
    else:
        evaluate = evaluate_item
    for attempt in range(1, retries + 1):
        try:
            table = with_provenance(evaluate(evaluator, job, item), evaluator.device)
            store.write_table(item["path"], table)
            return {"key": item["path"], "status": "ok", "message": "", "rows": table.num_rows}
        except Exception as exc:  # classified: the driver reports each kind with its own repair
            status = _kind_of(exc)
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if status == "transient" and attempt < retries:
                time.sleep(backoff * 2 ** (attempt - 1))
                continue
            if status == "oom":
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            return {"key": item["path"], "status": status, "message": message, "rows": 0}


def run_local(job: Job, store: Store, items: list[dict], evaluator=None, progress=None,
              out: list | None = None) -> list[dict]:
    """The same work in this process, no Ray (tests, benchmarks, debugging)."""
    from raysweep.evaluate import Evaluator

    evaluator = evaluator or Evaluator(job, store)
    out = [] if out is None else out
    for item in prepare(job, store, items, _info_of(evaluator)):
        out.append(run_item(evaluator, job, store, item))
        if progress:
            progress(out[-1])
    return out


def _info_of(evaluator):
    from raysweep.datasets import DatasetInfo

    d = evaluator.data
    return DatasetInfo(d.in_shape, d.num_classes, {"train": d.n_train, "test": len(d.test_y)})


class SweepStage:
    """Ray Data stage: setup in __init__ (eval split on device, model), pure __call__ per batch."""

    def __init__(self, job: dict, storage: str, threads: int = 1):
        import torch

        from raysweep.evaluate import Evaluator
        from raysweep.spec import parse_job

        torch.set_num_threads(max(1, threads))
        self.job = parse_job(job, "job from driver")
        self.store = Store(storage)
        self.evaluator = Evaluator(self.job, self.store)

    def __call__(self, batch: dict) -> dict:
        results = [run_item(self.evaluator, self.job, self.store, json.loads(s)) for s in batch["item"]]
        return {k: [r[k] for r in results] for k in ("key", "status", "message", "rows")}


def run_ray(job: Job, store: Store, items: list[dict], actors: tuple[int, float, float] | None = None,
            progress=None, out: list | None = None) -> list[dict]:
    """Fan the items out over an actor pool (GPUs per the job's accelerator policy); stream results
    back (appended to `out` as they come, so a stage that dies half-way keeps what it reported).

    `actors` is (most actors, GPUs each, CPUs each) from cluster.actor_plan. The pool starts with
    one actor and grows to that many as the autoscaler adds nodes."""
    import ray.data

    from raysweep.cluster import actor_plan, is_local

    if not items:
        return [] if out is None else out
    items = prepare(job, store, items)
    n_actors, gpus, cpus = actors or actor_plan(job)
    n_actors = min(n_actors, len(items))
    pool = (ray.data.ActorPoolStrategy(size=n_actors) if is_local()
            else ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors))
    ds = ray.data.from_items([{"item": json.dumps(it)} for it in items],
                             override_num_blocks=min(len(items), 50 * n_actors))
    # Ray Data puts the stage's constructor in the object store; an actor that Ray restarts would
    # need it again (Ray warns about exactly that). Lost actors are not restarted: the driver plans
    # the items they held again from what is stored (Run.sweep's rounds), which is exactly-once.
    # (max_restarts has no named parameter in Ray 2.60's map_batches; the pinned version accepts it.)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        stage = ds.map_batches(
            SweepStage, fn_constructor_kwargs={"job": job.to_dict(), "storage": store.address,
                                               "threads": int(cpus) or 1},
            batch_size=1, compute=pool, num_gpus=gpus, num_cpus=cpus, max_restarts=0)
    results = [] if out is None else out
    for row in stage.iter_rows():
        results.append(dict(row))
        if progress:
            progress(results[-1])
    return results
