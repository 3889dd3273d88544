"""Ray at the edges: starting or joining a cluster, the GPU policy, storage settings for every node,
where a piece of work ran, and Tune progress.

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
import warnings
from dataclasses import dataclass
from pathlib import Path

from raysweep.spec import Job, SpecError

log = logging.getLogger("raysweep")

_CONNECTED = False  # this process called ray.init (so it disconnects at the end)
_LOCAL = False  # ... and that Ray is a local one it started (no autoscaler: requests are final)

# Storage settings that must reach every trial and actor, whatever the nodes' own environment says.
STORAGE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "RAYSWEEP_DATA")


def storage_env() -> dict[str, str]:
    """The driver's storage settings, passed to every node through Ray's runtime environment."""
    return {k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)}


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS, e.g. "auto"), else start a local Ray.

    A local Ray detects the CPUs it may use itself (it reads cgroup limits) unless `num_cpus` says.
    """
    import ray

    global _CONNECTED, _LOCAL
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables; our progress instead
    # Ctrl-C must stop raysweep (and say how to resume), not just Tune's run: Tune's own SIGINT handler
    # would end the training quietly and stay installed, swallowing Ctrl-C during the sweep.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {} if address or not num_cpus else {"num_cpus": num_cpus}
    env = storage_env()
    # "local" starts a Ray of our own, never one that another program left running on this machine
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=True, log_to_driver=True, runtime_env={"env_vars": env} if env else None,
             **kwargs)
    _CONNECTED, _LOCAL = True, not address
    from ray.data import DataContext

    for name in ("ray.data", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_operator_progress_bars = False


def shutdown_ray(force: bool = False) -> None:
    """Stop the local Ray this process started, or disconnect from the cluster it joined."""
    import ray

    global _CONNECTED, _LOCAL
    if ray.is_initialized() and (_CONNECTED or force):
        ray.shutdown()
        _CONNECTED = _LOCAL = False


def joins_cluster(address: str | None) -> bool:
    """Whether the work will run on a cluster this process joins (not on a Ray it starts itself)."""
    import sys

    if address or os.environ.get("RAY_ADDRESS"):
        return True
    if "ray" in sys.modules:
        import ray

        return ray.is_initialized() and not _LOCAL
    return False


def is_local() -> bool:
    """True when this process started its own Ray (no autoscaler can add nodes)."""
    return _LOCAL


# ------------------------------------------------------------------------ capacity


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
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):  # the driver runs on the head, beside the monitor
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
                return os.path.expanduser(a.split("=", 1)[1])
    bootstrap = Path("~/ray_bootstrap_config.yaml").expanduser()
    return str(bootstrap) if bootstrap.exists() else None


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
    if _LOCAL:
        return Capacity(cpus, gpus, cpus, gpus, True)
    cap = autoscaler_capacity() or {}
    return Capacity(cpus, gpus, max(cpus, cap.get("CPU", 0.0)), max(gpus, cap.get("GPU", 0.0)), False)


# ------------------------------------------------------------------------ GPU policy


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
    cap = cap or capacity()
    r = job.resources
    gpu = decide_gpus(job, r.gpus_per_trial, "gpus_per_trial", cap)
    cpu = min(r.cpus_per_trial, max(cap.cpus_max, 1)) if cap.local else r.cpus_per_trial
    return {"cpu": cpu, "gpu": gpu}


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
        from raysweep.progress import log_interval

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


# ------------------------------------------------------------------------ checks where the work runs


def check_storage_reaches_nodes(store, shared: bool) -> None:
    """A local folder is one machine's disk: refused on a multi-node cluster unless it is shared."""
    import ray

    from raysweep.store import StoreError

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


def _probe_data(data: dict):
    """Runs on a worker: the dataset's shape and sizes, or why it is not there."""
    from raysweep.datasets import DatasetMissing, dataset_info
    from raysweep.spec import DataSpec

    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        return "ok", dataset_info(DataSpec(**data)), node
    except DatasetMissing as exc:
        return "missing", str(exc), node


def check_data_on_worker(job: Job, resources: dict):
    """Look for the dataset on a node that will run the work (a Ray task with the trial's resources),
    not on the head, which often has none. Returns its DatasetInfo; raises DatasetMissing."""
    import dataclasses

    import ray

    from raysweep.datasets import DatasetMissing

    task = ray.remote(_probe_data).options(num_cpus=min(resources.get("cpu", 1), 1),
                                           num_gpus=resources.get("gpu", 0))
    status, value, node = ray.get(task.remote(dataclasses.asdict(job.data)))
    if status != "ok":
        raise DatasetMissing(f"on Ray node {node} (where trials and evaluators run): {value}")
    return value


# ------------------------------------------------------------------------ provenance


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


# ------------------------------------------------------------------------ Tune progress


def ProgressCallback(fn):
    """A Tune callback that hands each trial result to `fn` (runs in the driver)."""
    from ray import tune

    global _ProgressCallback
    if _ProgressCallback is None:
        class _Progress(tune.Callback):
            def __init__(self, fn):
                self.fn = fn

            def __getstate__(self):  # Tune pickles its callbacks into its state; progress bars stay here
                return {"fn": None}

            def on_trial_result(self, iteration, trials, trial, result, **info):
                if self.fn:
                    self.fn(result)

        _ProgressCallback = _Progress
    return _ProgressCallback(fn)


_ProgressCallback = None
