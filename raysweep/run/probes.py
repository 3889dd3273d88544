"""Probes the rehearsal (run/rehearse.py) sends to the cluster: the nodes alive and what each offers, a
function run on every node (pinned there) with each node's answer or error, and one run where a trial or
an actor would run (with their resources: a GPU node when the job asks for GPUs)."""
from __future__ import annotations

import hashlib
import os

from raysweep.connect import is_local
from raysweep.data.packed import find
from raysweep.data.registry import dataset_info
from raysweep.io.store import Store
from raysweep.spec import DataSpec, SpecError


def alive_nodes() -> list[dict]:
    """Every node alive now: id, address, name, CPUs and GPUs it offers."""
    import ray

    return [{"id": n["NodeID"], "ip": n.get("NodeManagerAddress", ""), "name": n.get("NodeName", ""),
             "cpus": float(n["Resources"].get("CPU", 0)), "gpus": float(n["Resources"].get("GPU", 0))}
            for n in ray.nodes() if n.get("Alive")]


def nodes_that_work(waiting=lambda text: None, poll: float = 2.0) -> tuple[list[dict], list[dict]]:
    """(every node alive, those that run work: with CPUs or GPUs). On an autoscaling cluster whose head runs
    no work and where no worker has joined yet (cluster.yaml, k8s/rayjob.yaml), the autoscaler is asked for a
    node of 1 CPU and this waits for it, telling `waiting` what it waits for (the caller's deadline bounds it)."""
    import time

    import ray
    from ray.autoscaler.sdk import request_resources

    nodes = alive_nodes()
    work = [n for n in nodes if n["cpus"] or n["gpus"]]
    if work:
        return nodes, work
    if is_local():
        raise SpecError("this machine's Ray offers no CPUs and no GPUs to run work on; start it with some "
                        "(ray start --num-cpus N) or let raysweep start a local Ray (no --address)")
    waiting(f"a node that runs work: the head at {ray.util.get_node_ip_address()} offers no CPUs or GPUs and no "
            f"worker has joined; the autoscaler was asked for one (`ray status` shows it starting)")
    request_resources(bundles=[{"CPU": 1}])
    try:
        while not work:
            time.sleep(poll)
            nodes = alive_nodes()
            work = [n for n in nodes if n["cpus"] or n["gpus"]]
    finally:
        request_resources(bundles=[])  # the request served; the stages ask for what they need themselves
    return nodes, work


def on_each_node(fn, *args, nodes: list[dict] | None = None, timeout: float = 300) -> dict[str, tuple[str, object]]:
    """node id -> ("ok", what fn returned there) or ("error", its message): fn runs once on every node,
    pinned to it, taking no CPU (a head with 0 CPUs answers too)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_nodes() if nodes is None else nodes
    task = ray.remote(fn)
    refs = {n["id"]: task.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["id"], soft=False)).remote(*args) for n in nodes}
    out = {}
    for node, ref in refs.items():
        try:
            out[node] = ("ok", ray.get(ref, timeout=timeout))
        except Exception as exc:  # the node's own error, or the node gone: named in the report
            cause = getattr(exc, "cause", None) or exc
            last = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
            out[node] = ("error", f"{type(cause).__name__}: {last}")
    return out


def where_the_work_runs(fn, *args, cpus: float = 1, gpus: float = 0, timeout: float = 1800):
    """fn's result, run as one task with a trial's or an actor's resources (on a GPU node when gpus > 0)."""
    import ray

    return ray.get(ray.remote(fn).options(num_cpus=cpus, num_gpus=gpus, max_retries=0).remote(*args), timeout=timeout)


def store_roundtrip(storage: str, folder: str, size: int = 1 << 20) -> dict:
    """On one node: write `size` random bytes into the store, read them back, compare, delete. Returns
    where and how long; raises with the store's own error."""
    import time

    import ray

    store = Store(storage)
    node = ray.get_runtime_context().get_node_id()
    key = f"{folder}/probe-{node[:12]}-{os.getpid()}.bin"
    data = os.urandom(size)
    t = time.perf_counter()
    store.write_bytes(key, data)
    back = store.read_bytes(key)
    store.delete(key)
    if hashlib.sha256(back).digest() != hashlib.sha256(data).digest():
        raise OSError(f"{store.url(key)} read back other bytes than were written")
    return {"node": node, "seconds": time.perf_counter() - t, "bytes": 2 * size}


def data_here(data: dict, storage: str) -> dict:
    """On one node: the job's dataset as this node sees it (its shape and split sizes), or DatasetMissing."""
    spec, store = DataSpec(**data), Store(storage)
    info = dataset_info(spec, store=store)
    out = {"in_shape": list(info.in_shape), "classes": info.num_classes, "sizes": dict(info.sizes)}
    if spec.source == "store":  # a packed dataset: the first shard of each split read back whole
        target, man = find(store, spec.root or spec.name)
        for split, entry in man["splits"].items():
            first = entry["shards"][0]
            if len(target.read_bytes(first["path"])) != first["bytes"]:
                raise OSError(f"{target.url(first['path'])} does not read back as the {first['bytes']} bytes packed")
        out["shards"] = sum(len(e["shards"]) for e in man["splits"].values())
    return out
