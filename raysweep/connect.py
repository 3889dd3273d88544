"""Ray at the edges: start a local Ray or join a cluster, and hand every node the driver's storage
settings through Ray's runtime environment; what a decode task of a streamed dataset takes. Below every
package that starts Ray (data's packing and streaming, cluster/, sweep/, run/), above the spec and plugins."""
from __future__ import annotations

import logging
import os
import warnings

from raysweep import signals
from raysweep.plugins import py_modules

DECODE_CPUS = 1.0  # one Ray Data decode task of a streamed dataset (data/streams.py): what training must leave free
_CONNECTED = False  # this process called ray.init (so it disconnects at the end)
_LOCAL = False  # ... and that Ray is a local one it started (no autoscaler: requests are final)


# Storage settings that must reach every trial and actor, whatever the nodes' own environment says (and
# RAYSWEEP_DEBUG: a work item's unexpected error then carries its traceback back to the driver).
STORAGE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "RAYSWEEP_DATA", "RAYSWEEP_DEBUG")


def storage_env() -> dict[str, str]:
    """The driver's storage settings, passed to every node through Ray's runtime environment."""
    return {k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)}


def init_ray(address: str | None = None, num_cpus: int | None = None, job=None, log_to_driver: bool = True) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS, e.g. "auto"), else start a local Ray.

    A local Ray detects the CPUs it may use itself (it reads cgroup limits) unless `num_cpus` says.
    A job whose model or data is the user's code (an import path) ships that code to every worker
    (runtime environment `py_modules`). `log_to_driver=False`: the workers' own output stays in their log
    files (a command whose tasks print nothing: what reaches the console then is only Ray's teardown of idle
    workers); `worker_deaths` reports the workers that crashed instead.
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
    # a Ray of our own: no Train V2 preemption watcher (no spot nodes to watch; its actor's restart setup
    # logs a core-worker error into the user's console at every data-parallel start)
    runtime_env = {"env_vars": {**storage_env(), **({} if address else {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"})}}
    if job is not None:
        runtime_env["py_modules"] = py_modules([job.model.name, job.data.name, *(f"{p}:_" for p in job.plugins)])
    runtime_env = {k: v for k, v in runtime_env.items() if v}
    # "local" starts a Ray of our own, never one that another program left running on this machine
    ours = signals.installed()  # ray.init makes SIGTERM exit the process (sys.exit): the command's stop takes it back
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=True, log_to_driver=log_to_driver, runtime_env=runtime_env or None, **kwargs)
    if ours:
        signals.install()
    _CONNECTED, _LOCAL = True, not address
    from ray.data import DataContext

    for name in ("ray.data", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_operator_progress_bars = False


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


def worker_deaths(since_ms: int) -> list[dict]:
    """Ray workers that died of a crash (a signal, an abort, memory) since `since_ms`: pid, why, and their log
    files. Workers Ray ended itself (idle ones, at shutdown) are not crashes; a task retried after its worker
    crashed still completed, but the crash is reported, not hidden by the retry."""
    import ray
    from ray._private.state import state
    from ray.core.generated import common_pb2, gcs_pb2

    crashed = (common_pb2.SYSTEM_ERROR, common_pb2.NODE_OUT_OF_MEMORY)
    out = []
    for raw in state._connect_and_get_accessor().get_worker_table():
        w = gcs_pb2.WorkerTableData.FromString(raw)
        if w.is_alive or w.worker_type != common_pb2.WORKER or w.exit_type not in crashed or w.end_time_ms < since_ms:
            continue
        info = {_text(k): _text(v) for k, v in w.worker_info.items()}
        out.append({"pid": w.pid, "why": w.exit_detail.strip() or common_pb2.WorkerExitType.Name(w.exit_type),
                    "log": info.get("stderr_file", "") or ray.get_runtime_context().gcs_address})
    return out


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


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
