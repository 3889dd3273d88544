"""How much of the cluster a job takes: what the cluster has and can grow to, and the GPU policy.

GPU policy (``resources.accelerator``):

- ``"gpu"``: trials and evaluator actors each take ``gpus_per_*`` GPUs (1 when left at -1). On a
  local Ray without GPUs that is an immediate error; on a joined cluster raysweep waits for the
  autoscaler to add GPU nodes and says so while it waits.
- ``"auto"``: GPUs when the cluster has some *or its autoscaler can add some* (read from the
  autoscaler's config), CPUs otherwise; never decided from the nodes alive this second alone.
- ``"cpu"``: CPUs only.
"""
from __future__ import annotations

import glob
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from raysweep.connect import DECODE_CPUS, is_local
from raysweep.progress import log_interval
from raysweep.spec import Job, SpecError

log = logging.getLogger("raysweep")


def _config_capacity(config: dict) -> dict[str, float]:
    """Most resources an autoscaler config can bring up: Σ over node types of max_workers × resources."""
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    cap = int(config.get("max_workers", 1 << 30))
    out: dict[str, float] = {}
    for name, node in types.items():
        count = 1 if name == head else min(int(node.get("max_workers", 0)), cap)
        for key, value in (node.get("resources") or {}).items():
            out[key] = out.get(key, 0.0) + count * float(value)
    return out


def _autoscaling_config_path(gcs_address: str) -> str | None:
    """The autoscaler config of this cluster: $RAYSWEEP_AUTOSCALING_CONFIG, the file `ray up` puts on
    the head (~/ray_bootstrap_config.yaml), or the one this cluster's monitor process was given."""
    if os.environ.get("RAYSWEEP_AUTOSCALING_CONFIG"):
        return os.environ["RAYSWEEP_AUTOSCALING_CONFIG"]
    found = _monitor_config(gcs_address)
    if found:
        return found
    bootstrap = Path("~/ray_bootstrap_config.yaml").expanduser()
    return str(bootstrap) if bootstrap.exists() else None


_MONITOR_CONFIGS: dict[
    str, str
] = {}  # gcs address -> its monitor's config (found ones only: a monitor may start later)


def _monitor_config(gcs_address: str) -> str | None:
    """The --autoscaling-config of the monitor process of the cluster at `gcs_address` (the driver runs
    on the head, beside it); a scan of /proc, kept once found."""
    if gcs_address in _MONITOR_CONFIGS:
        return _MONITOR_CONFIGS[gcs_address]
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            args = Path(cmdline).read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("autoscaler/_private/monitor.py") for a in args):
            continue
        if f"--gcs-address={gcs_address}" not in args:
            continue
        for a in args:
            if a.startswith("--autoscaling-config="):
                _MONITOR_CONFIGS[gcs_address] = os.path.expanduser(a.split("=", 1)[1])
                return _MONITOR_CONFIGS[gcs_address]
    return None


def autoscaler_capacity() -> dict[str, float] | None:
    """Resources the cluster can grow to (autoscaler v2 / KubeRay report it; else its config file)."""
    import ray

    try:
        from ray._private.state import state

        reported = state.get_max_resources_from_cluster_config()
        if reported:
            return {k: float(v) for k, v in reported.items()}
    except Exception:  # an older GCS without the call: fall back to the config file
        pass
    path = _autoscaling_config_path(ray.get_runtime_context().gcs_address)
    if not path or not os.path.exists(path):
        return None
    import yaml

    try:
        return _config_capacity(yaml.safe_load(Path(path).read_text()) or {})
    except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        log.warning("could not read the autoscaler config %s (%s); deciding from the nodes alive now", path, exc)
        return None


def node_types() -> list[dict[str, float]] | None:
    """The resources of each node type the autoscaler may launch (from its config file), or None when this
    cluster has no autoscaler config this process can read."""
    import ray

    path = _autoscaling_config_path(ray.get_runtime_context().gcs_address)
    if not path or not os.path.exists(path):
        return None
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        log.warning("could not read the autoscaler config %s (%s)", path, exc)
        return None
    head = config.get("head_node_type")
    return [{k: float(v) for k, v in (node.get("resources") or {}).items()}
            for name, node in (config.get("available_node_types") or {}).items()
            if name != head and int(node.get("max_workers", 0)) > 0]


def largest_node(nodes: list[dict], cap: "Capacity") -> dict[str, float]:
    """The most CPUs and GPUs one node offers: the nodes alive (`probes.alive_nodes()`) and, on a cluster,
    the node types its autoscaler can add (unknown types: what the cluster can grow to in all)."""
    cpus = max((n["cpus"] for n in nodes), default=0.0)
    gpus = max((n["gpus"] for n in nodes), default=0.0)
    if not cap.local:
        types = node_types()
        if types is None and autoscaler_capacity():
            return {"cpus": max(cpus, cap.cpus_max), "gpus": max(gpus, cap.gpus_max)}
        for t in types or []:
            cpus, gpus = max(cpus, t.get("CPU", 0.0)), max(gpus, t.get("GPU", 0.0))
    return {"cpus": cpus, "gpus": gpus}


@dataclass(frozen=True)
class Capacity:
    cpus_now: float
    gpus_now: float
    cpus_max: float  # with what the autoscaler can add (= now on a local Ray)
    gpus_max: float
    local: bool


def capacity() -> Capacity:
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    if is_local():
        return Capacity(cpus, gpus, cpus, gpus, True)
    cap = autoscaler_capacity() or {}
    return Capacity(cpus, gpus, max(cpus, cap.get("CPU", 0.0)), max(gpus, cap.get("GPU", 0.0)), False)


def decide_gpus(job: Job, wanted: float, key: str, cap: Capacity) -> float:
    """GPUs for one trial/actor under the job's accelerator policy (see the module docstring)."""
    acc = job.resources.accelerator
    if acc == "cpu":
        return 0.0
    gpu = wanted if wanted >= 0 else (1.0 if acc == "gpu" or cap.gpus_max > 0 else 0.0)
    if gpu <= cap.gpus_max:
        return gpu
    why = (f"job {job.name!r} is meant for GPUs (resources.accelerator = \"gpu\")" if acc == "gpu" and wanted < 0
           else f"resources.{key} = {gpu:g}")
    if cap.local:
        raise SpecError(
            f"{why}, but this machine's Ray has {cap.gpus_now:g} GPUs. Run it on a GPU machine or join a GPU "
            f"cluster with --address auto; to run it on CPUs anyway (slow: smoke tests), add "
            f"--set resources.accelerator=cpu.")
    log.warning("%s, but this cluster has %g GPUs and its autoscaler config (if any) adds none; waiting for "
                "GPU nodes to join.", why, cap.gpus_now)
    return gpu


def trial_resources(job: Job, cap: Capacity | None = None) -> dict:
    """What one trial's rank holds; a streamed dataset's ranks leave decoding its CPU (`decoding_room`)."""
    cap = cap or capacity()
    r = job.resources
    gpu = decide_gpus(job, r.gpus_per_trial, "gpus_per_trial", cap)
    cpu = min(r.cpus_per_trial, max(cap.cpus_max, 1)) if cap.local else r.cpus_per_trial
    if job.data.source == "store":
        cpu = decoding_room(job, cpu, cap)
    return {"cpu": cpu, "gpu": gpu}


MIN_RANK_CPUS = 0.25  # below this a rank is not worth shrinking to


def decoding_room(job: Job, cpu: float, cap: Capacity) -> float:
    """A streamed dataset (data.source = "store") is decoded by Ray tasks of DECODE_CPUS each, which
    must find a CPU the training ranks do not hold, or no batch ever comes. On a local Ray the ranks
    shrink to leave it (a laptop's 2 CPUs: two ranks of 0.5); on a cluster that cannot have it, even
    grown by its autoscaler, the run stops before training with the numbers and the fix."""
    world = job.resources.workers
    if cap.cpus_max - cpu * world >= DECODE_CPUS:
        return cpu
    fits = (cap.cpus_max - DECODE_CPUS) / world
    if cap.local and fits >= MIN_RANK_CPUS:
        log.info("a streamed dataset is decoded by Ray tasks of %g CPU: each of the %d rank(s) takes %g CPUs "
                 "(resources.cpus_per_trial = %g) so that this machine's %g CPUs leave decoding one", DECODE_CPUS,
                 world, fits, job.resources.cpus_per_trial, cap.cpus_max)
        return fits
    where = "this machine's Ray" if cap.local else "the cluster (with what its autoscaler can add)"
    fix = (f"set resources.cpus_per_trial = {max(fits, 0.1):.2g} or less" if fits > 0 else
           "run on a machine or cluster with more CPUs")
    raise SpecError(
        f"job {job.name!r} streams a packed dataset (data.source = \"store\"), decoded by Ray tasks of "
        f"{DECODE_CPUS:g} CPU each, but its training ranks would hold {cpu * world:g} of the {cap.cpus_max:g} CPUs "
        f"{where} has ({world} rank(s) × resources.cpus_per_trial = {cpu:g}), leaving decoding "
        f"{max(cap.cpus_max - cpu * world, 0):g}: no batch would ever come. Leave it a CPU: {fix}, "
        f"{'or add a CPU node type to the cluster config (cluster.yaml)' if not cap.local else 'or fewer ranks'}.")


def concurrent_trials(job: Job, resources: dict, todo: int, cap: Capacity | None = None) -> int:
    """Trials to run at once: all of them, except that a streamed dataset's trials together leave
    decoding DECODE_CPUS of what the cluster can have."""
    if job.data.source != "store":
        return todo
    cap = cap or capacity()
    per_trial = max(resources["cpu"] * job.resources.workers, 1e-9)
    return max(1, min(todo, int((cap.cpus_max - DECODE_CPUS) / per_trial + 1e-9)))


def actor_plan(job: Job, cap: Capacity | None = None) -> tuple[int, float, float]:
    """(most eval actors, GPUs per actor, CPUs per actor) for the sweep stage."""
    cap = cap or capacity()
    r = job.resources
    gpu = decide_gpus(job, r.gpus_per_actor, "gpus_per_actor", cap)
    if r.eval_actors:
        n = r.eval_actors
    elif gpu:
        n = max(1, int(cap.gpus_max // gpu))
    else:
        n = max(1, int(cap.cpus_max))
    return n, gpu, 0.0 if gpu else 1.0


class ResourceWatch:
    """While work waits for the autoscaler, say so every `every` seconds ($RAYSWEEP_LOG_INTERVAL by
    default): Ray's own resource notices are too noisy to pass through, so raysweep speaks instead."""

    def __init__(self, gpus: float, what: str, say=None, every: float | None = None, poll: float = 5.0):
        every = log_interval() if every is None else every
        self.gpus, self.what, self.every, self.poll = gpus, what, every, min(poll, max(every, 1.0))
        self.say = say or (lambda msg: log.warning("%s", msg))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import ray

        last = 0.0
        while not self._stop.wait(self.poll):
            try:
                have = float(ray.cluster_resources().get("GPU", 0))
            except Exception:  # Ray going down under us: nothing to report
                return
            if have < self.gpus and time.monotonic() - last >= self.every:
                self.say(f"waiting for {self.gpus:g} GPU(s) for {self.what}: the cluster has {have:g} now; "
                         f"the autoscaler is adding nodes (`ray status` shows them)")
                last = time.monotonic()

    def __enter__(self):
        if self.gpus > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
