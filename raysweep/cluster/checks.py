"""Checks that run where the work runs (storage every node reaches, the dataset on a worker) and
provenance: which node, device and GPUs computed a row."""
from __future__ import annotations

from raysweep.cluster.policy import autoscaler_capacity
from raysweep.errors import DatasetMissing, StoreError
from raysweep.io.store import Store
from raysweep.spec import DataSpec, Job


def check_storage_reaches_nodes(store, shared: bool) -> None:
    """A local folder is one machine's disk: refused on a multi-node cluster unless it is shared."""
    import ray

    if not store.is_local or shared:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1 and autoscaler_capacity() is None:
        return  # one machine, and no autoscaler to add others
    raise StoreError(
        f"storage {store.uri} is a local folder, but this Ray cluster has {len(nodes)} node(s) and can add more: "
        f"each node would write checkpoints and points to its own disk, and the run would then fail with "
        f"'not trained'. Use an object store every node reaches (--storage s3://BUCKET/PREFIX or gs://...), or, "
        f"if {store.uri} is a filesystem mounted on every node (NFS, FSx, EFS), say so with --shared-storage "
        f"(or $RAYSWEEP_SHARED_STORAGE=1).")


def _probe_data(data: dict, storage: str):
    """Runs on a worker: the dataset's shape and sizes, or why it is not there."""
    import ray

    from raysweep.data.registry import dataset_info  # torch, on the worker

    node = ray.get_runtime_context().get_node_id()
    try:
        return "ok", dataset_info(DataSpec(**data), store=Store(storage)), node
    except DatasetMissing as exc:
        return "missing", str(exc), node


def check_data_on_worker(job: Job, resources: dict, store):
    """Look for the dataset on a node that will run the work (a Ray task with the trial's resources),
    not on the head, which often has none. Returns its DatasetInfo; raises DatasetMissing."""
    import dataclasses

    import ray

    task = ray.remote(_probe_data).options(num_cpus=min(resources.get("cpu", 1), 1),
                                           num_gpus=resources.get("gpu", 0))
    status, value, node = ray.get(task.remote(dataclasses.asdict(job.data), store.address))
    if status != "ok":
        raise DatasetMissing(f"on Ray node {node} (where trials and evaluators run): {value}")
    return value


def provenance(device) -> dict[str, str]:
    """Where this process runs: Ray node id, torch device (with the GPU's name), Ray's GPU ids."""
    import sys

    out = {"node_id": "", "device": str(device), "gpu_ids": ""}
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            out["node_id"] = ctx.get_node_id() or ""
            ids = ctx.get_accelerator_ids().get("GPU", [])
            out["gpu_ids"] = ",".join(str(i) for i in ids)
    return out


def gpu_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if getattr(device, "type", "") == "cuda" else ""
