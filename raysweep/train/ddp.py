"""Data-parallel replicates on Ray Train: a replicate's Tune trial builds and fits a TorchTrainer of
N workers (Ray 2.60's Train V2: the trial holds no device of its own, its workers do), NCCL on GPUs,
gloo on CPUs. Every worker runs the replicate's plain-torch loop (`train/loop.train_replicate`) as
one rank; rank 0 writes checkpoints, manifests and resume state to the store, all ranks restore from
it — so a lost worker (its process or its node) restarts the worker group from the last resume state
(Train's FailureConfig), losing at most the steps since then (the last epoch's end at the most).
"""
from __future__ import annotations

from raysweep.io import paths
from raysweep.io.store import Store
from raysweep.plugins import load_plugins
from raysweep.spec import Job, parse_job

MAX_FAILURES = 3  # worker-group restarts per replicate before the trial fails


def _worker(config: dict) -> None:
    """One rank (a Ray Train worker)."""
    import logging

    import ray.train
    import torch
    from ray.train.v2._internal.execution import context as train_context

    from raysweep.train.loop import train_replicate
    from raysweep.train.parallel import Rank

    # Train V2 logs every report at INFO under a logger named by its file (the root logger's level): not ours
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    ctx = ray.train.get_context()
    rank = Rank(ctx.get_world_rank(), ctx.get_world_size())
    torch.set_num_threads(max(1, int(config["threads"])))
    job = parse_job(config["job"], "job from driver")
    load_plugins(job.plugins)

    def report(info: dict) -> None:  # every rank reports at the same steps (Train V2's report is a barrier)
        ray.train.report({k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    train_replicate(job, config["replicate"], Store(config["storage"]), progress=report, rank=rank)


def _quiet_trainer():
    """TorchTrainer without Train V2's placement-group cleaner, which asks the State API (the dashboard)
    every second whether the controller lives: raysweep's own local Ray runs without a dashboard, so it
    could never answer, and the cleaner only logged that, once a second, into the user's console. The
    worker group's placement group is still removed with the controller that owns it."""
    from ray.train.torch import TorchTrainer

    class Quiet(TorchTrainer):
        def _create_default_callbacks(self):
            return [c for c in super()._create_default_callbacks()
                    if type(c).__name__ != "PlacementGroupCleanerCallback"]
    return Quiet


def train_ddp(
    job: Job, k: int, store: Store, resources: dict, tune_session: bool = True, own_ray: bool = False
) -> None:
    """Train replicate k on job.resources.workers Ray Train workers, each holding `resources` divided
    as the job says (CPUs per worker: resources.cpus_per_trial; GPUs: the trial's over the workers).
    `own_ray`: on the local Ray raysweep started (no dashboard, no State API)."""
    import torch
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.config import LoggingConfig

    world = job.resources.workers
    gpus = resources.get("gpu", 0) / world if resources.get("gpu", 0) else 0.0
    per_worker = {"CPU": resources.get("cpu", 1.0), **({"GPU": gpus} if gpus else {})}
    callbacks = []
    if tune_session:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    # NCCL between real GPUs; gloo between CPUs (and the fake GPUs of a test cluster, which CUDA cannot see)
    backend = "nccl" if gpus and torch.cuda.is_available() else "gloo"
    trainer = (_quiet_trainer() if own_ray else TorchTrainer)(
        _worker, torch_config=TorchConfig(backend=backend),
        train_loop_config={"job": job.to_dict(), "replicate": k, "storage": store.address,
                           "threads": resources.get("cpu", 1)},
        scaling_config=ScalingConfig(num_workers=world, use_gpu=bool(gpus), resources_per_worker=per_worker),
        run_config=RunConfig(name=f"ddp-replicate_{k}", storage_path=store.full(paths.run_dir(job.name, job.hash)),
                             storage_filesystem=store.fs, failure_config=FailureConfig(max_failures=MAX_FAILURES),
                             callbacks=callbacks, logging_config=LoggingConfig(log_level="WARNING")))
    trainer.fit()
