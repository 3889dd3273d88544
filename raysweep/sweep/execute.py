"""Execute work items: in this process or fanned out over a Ray Data actor pool; each item's
failure classified by kind; every stored row says where it was computed."""
from __future__ import annotations

import errno
import os
import time
import warnings

import pyarrow as pa

from raysweep.cluster.checks import provenance
from raysweep.cluster.policy import actor_plan
from raysweep.connect import is_local
from raysweep.errors import CheckpointError, ManifestError, StorageFull
from raysweep.io.schemas import PROVENANCE
from raysweep.io.store import IO, Store
from raysweep.plugins import load_plugins
from raysweep.spec import Job, parse_job
from raysweep.sweep.prep import prepare
from raysweep.work.items import from_json, to_json
from raysweep.work.kinds import evaluator_of, item_types


def with_provenance(table: pa.Table, device) -> pa.Table:
    """Every points row says where it was computed: Ray node id, torch device, Ray's GPU ids."""
    where = provenance(device)
    for name in PROVENANCE:
        table = table.append_column(name, pa.array([where[name]] * table.num_rows, pa.string()))
    return table


RETRIES = 3  # transient store errors: tries per item, with exponential backoff (1 s, 2 s, ...)


def _kind_of(exc: BaseException) -> str:
    """How an item failed: "checkpoint" (damaged or missing input: permanent until repaired), "full" (no space
    left in the storage: the whole sweep stops with the fix), "oom"
    (out of memory: the batch is too big), "transient" (the store or the network: worth retrying),
    "error" (anything else: a bug or bad input; not retried)."""
    import torch

    if isinstance(exc, (CheckpointError, ManifestError)):
        return "checkpoint"
    if isinstance(exc, StorageFull) or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "full"
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in str(exc).lower():
        return "oom"
    if isinstance(exc, (OSError, pa.ArrowException, TimeoutError, ConnectionError)):
        return "transient"
    return "error"


def run_item(evaluator, job: Job, store: Store, item, retries: int = RETRIES, backoff: float = 1.0) -> dict:
    """Evaluate and store one item with its kind's evaluator; failures are returned (with their kind),
    not raised, so the sweep goes on. Transient store errors (a write read back with another size
    among them) are retried here with backoff before the item is given up."""
    evaluate = evaluator_of(item)
    for attempt in range(1, retries + 1):
        try:
            table = with_provenance(evaluate(evaluator, job, item), evaluator.device)
            store.write_table(item.path, table)
            return {"key": item.path, "status": "ok", "message": "", "rows": table.num_rows}
        except Exception as exc:  # classified: the driver reports each kind with its own repair
            status = _kind_of(exc)
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if status == "error" and os.environ.get("RAYSWEEP_DEBUG"):  # a bug: its traceback, where it happened
                import traceback

                message += "\n" + traceback.format_exc()
            if status == "transient" and attempt < retries:
                time.sleep(backoff * 2 ** (attempt - 1))
                continue
            if status == "oom":
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            return {"key": item.path, "status": status, "message": message, "rows": 0}


def run_local(
    job: Job, store: Store, items: list, evaluator=None, progress=None, out: list | None = None
) -> list[dict]:
    """The same work in this process, no Ray (tests, benchmarks, debugging). Each item goes through the
    same JSON the actors receive (`to_json` -> `from_json`), so that no path here skips what users' takes."""
    from raysweep.data.types import DatasetInfo
    from raysweep.evaluate.evaluator import Evaluator

    evaluator = evaluator or Evaluator(job, store)
    d = evaluator.data
    info = DatasetInfo(d.in_shape, d.num_classes, {"train": d.n_train, "test": len(d.test_y)})
    out = [] if out is None else out
    for item in prepare(job, store, items, info):
        out.append(run_item(evaluator, job, store, from_json(to_json(item), item_types())))
        if progress:
            progress(out[-1])
    return out


class SweepStage:
    """Ray Data stage: setup in __init__ (eval split on device, model), pure __call__ per batch."""

    def __init__(self, job: dict, storage: str, threads: int = 1):
        import torch

        from raysweep.evaluate.evaluator import Evaluator

        torch.set_num_threads(max(1, threads))
        self.job = parse_job(job, "job from driver")
        load_plugins(self.job.plugins)  # a plugin's kinds and item classes, registered in this process too
        self.store = Store(storage)
        self.evaluator = Evaluator(self.job, self.store)

    def __call__(self, batch: dict) -> dict:
        results = []
        for s in batch["item"]:
            before = dict(IO)
            results.append(run_item(self.evaluator, self.job, self.store, from_json(s, item_types())))
            results[-1].update({f"store_{k}": IO[k] - before[k] for k in IO})  # this item's requests and bytes
        return {k: [r[k] for r in results] for k in results[0]} if results else {}


def items_per_call(items: int, actors: int) -> int:
    """Work items per actor call: 1 while an actor has fewer than 64 items to do (every item its own
    progress step), more for long sweeps (up to 16): each call's output is a block whose object and
    metadata the driver tracks, so fewer, larger calls keep the driver's time and memory per item down."""
    return max(1, min(16, items // (64 * max(actors, 1))))


def run_ray(job: Job, store: Store, items: list, actors: tuple[int, float, float] | None = None,
            local_ray: bool | None = None, progress=None, out: list | None = None) -> list[dict]:
    """Fan prepared items (sweep/prep.py) out over an actor pool on the Ray this process joined; stream
    results back (appended to `out` as they come, so a stage that dies half-way keeps what it reported).

    `actors` is (most actors, GPUs each, CPUs each), by default cluster.policy.actor_plan's. On a
    cluster (`local_ray` False) the pool starts with one actor and grows as the autoscaler adds nodes."""
    import ray.data

    results = [] if out is None else out
    if not items:
        return results
    n_actors, gpus, cpus = actors or actor_plan(job)
    local_ray = is_local() if local_ray is None else local_ray
    n_actors = min(n_actors, len(items))
    pool = (ray.data.ActorPoolStrategy(size=n_actors) if local_ray
            else ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors))
    ds = ray.data.from_items([{"item": to_json(it)} for it in items],
                             override_num_blocks=min(len(items), 50 * n_actors))
    # Ray Data puts the stage's constructor in the object store; an actor that Ray restarts would
    # need it again (Ray warns about exactly that). Lost actors are not restarted: the driver plans
    # the items they held again from what is stored (sweep/rounds.py), which is exactly-once.
    # (max_restarts has no named parameter in Ray 2.60's map_batches; the pinned version accepts it.)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        stage = ds.map_batches(
            SweepStage, fn_constructor_kwargs={"job": job.to_dict(), "storage": store.address,
                                               "threads": int(cpus) or 1},
            batch_size=items_per_call(len(items), n_actors), compute=pool, num_gpus=gpus, num_cpus=cpus,
            max_restarts=0)
    for row in stage.iter_rows():
        results.append(dict(row))
        if progress:
            progress(results[-1])
    return results
