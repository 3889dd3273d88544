"""Ray at the edges: joining or starting a cluster, reading its resources, Tune progress."""
from __future__ import annotations

import logging
import os
import warnings

from raysweep.spec import Job


_OWNED = False  # whether this process's Ray was started by init_ray (and so is ours to stop)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS, e.g. "auto"), else start a local one."""
    import ray

    global _OWNED
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables; our bars instead
    warnings.filterwarnings("ignore", module="ray")
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {} if address else {"num_cpus": num_cpus or os.cpu_count()}
    # "local" starts a Ray of our own, never one that another program left running on this machine
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=True, log_to_driver=True, **kwargs)
    _OWNED = True
    from ray.data import DataContext

    for name in ("ray.data", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_operator_progress_bars = False


def shutdown_ray(force: bool = False) -> None:
    """Stop the Ray this process started (a Ray started by someone else is left running)."""
    import ray

    global _OWNED
    if ray.is_initialized() and (_OWNED or force):
        ray.shutdown()
        _OWNED = False


def cluster_resources() -> tuple[float, float]:
    """(CPUs, GPUs) of the running cluster."""
    import ray

    res = ray.cluster_resources()
    return float(res.get("CPU", 0)), float(res.get("GPU", 0))


def _check_gpus(wanted: float, have: float, key: str) -> None:
    """A request no node can meet: an error on a local Ray; on a cluster the autoscaler may add GPUs."""
    if wanted <= have:
        return
    msg = (f"resources.{key} = {wanted:g} but this Ray cluster has {have:g} GPUs. Set "
           f"--set resources.{key}=-1 (use GPUs when present) or 0 (CPU only), or join a GPU cluster with --address.")
    if _OWNED:
        from raysweep.spec import SpecError

        raise SpecError(msg)
    logging.getLogger("raysweep").warning("%s Waiting for the autoscaler to add GPU nodes.", msg)


def trial_resources(job: Job) -> dict:
    cpus, gpus = cluster_resources()
    r = job.resources
    gpu = r.gpus_per_trial if r.gpus_per_trial >= 0 else (1.0 if gpus else 0.0)
    _check_gpus(gpu, gpus, "gpus_per_trial")
    return {"cpu": min(r.cpus_per_trial, max(cpus, 1)), "gpu": gpu}


def actor_plan(job: Job) -> tuple[int, float, float]:
    """(number of eval actors, GPUs per actor, CPUs per actor) for the sweep stage."""
    cpus, gpus = cluster_resources()
    r = job.resources
    gpu = r.gpus_per_actor if r.gpus_per_actor >= 0 else (1.0 if gpus else 0.0)
    _check_gpus(gpu, gpus, "gpus_per_actor")
    if r.eval_actors:
        n = r.eval_actors
    elif gpu:
        n = max(1, int(gpus // gpu))
    else:
        n = max(1, int(cpus))
    return n, gpu, 0.0 if gpu else 1.0




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
