"""The Ray Tune driver: one trial per training task still to do (work/tasks.py: a replicate, an instability
child or a curve's bend), Tune's state in the run folder, and a callback that hands trial results to the
driver's progress."""
from __future__ import annotations

import errno
import logging
import os

import torch

from raysweep import signals
from raysweep.connect import is_local
from raysweep.errors import StorageFull, TrainingFailed
from raysweep.io import paths
from raysweep.io.store import Store, full_message
from raysweep.plugins import load_plugins
from raysweep.spec import Job, parse_job
from raysweep.train.bend import train_bend
from raysweep.train.ddp import train_ddp
from raysweep.train.loop import train_replicate
from raysweep.train.spawn import train_child
from raysweep.work.tasks import Bend, Child, Replicate, Task, task_of


def _replicate(job: Job, task: Replicate, store: Store, config: dict, report) -> None:
    if job.resources.workers > 1:  # a data-parallel replicate: its own Ray Train worker group
        train_ddp(job, task.k, store, config["resources"], own_ray=config.get("own_ray", False))
    else:
        train_replicate(job, task.k, store, progress=report)


RUNS = {  # how each kind of task trains, in its trial
    Replicate: _replicate,
    Child: lambda job, t, store, config, report: train_child(job, t.k, t.step, t.child, store, progress=report),
    Bend: lambda job, t, store, config, report: train_bend(job, t.sweep, t.i, t.j, store, progress=report),
}


def _trainable(config: dict) -> None:
    from ray import tune

    job = parse_job(config["job"], "job from driver")
    load_plugins(job.plugins)  # a plugin's models, datasets and losses, registered in this trial's process too
    torch.set_num_threads(max(1, int(config["threads"])))
    task = task_of(config["task"])

    def report(info: dict) -> None:
        tune.report({k: v for k, v in info.items() if isinstance(v, (int, float))})
    RUNS[type(task)](job, task, Store(config["storage"]), config, report)


def train_all(job: Job, store: Store, tasks: list[Task], resources: dict, progress=None, concurrent: int = 0) -> None:
    """One Tune trial per task (all of one kind) still to train, `concurrent` at a time at most (0: all);
    Tune's own state goes under the run folder, in the kind's folder."""
    from ray import tune

    todo = [t for t in tasks if not t.done(store, job)]
    if not todo:
        return
    kinds = {type(t) for t in todo}
    if len(kinds) > 1:
        raise ValueError(f"one kind of training task at a time, not {sorted(k.__name__ for k in kinds)}")
    run = paths.run_dir(job.name, job.hash)
    ddp = job.resources.workers > 1 and isinstance(todo[0], Replicate)
    # a data-parallel replicate's trial only drives its TorchTrainer: the workers hold CPUs and GPUs
    trainable = tune.with_resources(_trainable, {"cpu": 0.0, "memory": 1.0} if ddp else resources)
    # reuse_actors: a finished trial's process runs the next trial (torch, the data and the model code imported
    # once); every trial seeds itself, so its checkpoints are those of a fresh process (digits_mlp's 39 compared)
    tuner = tune.Tuner(
        trainable,
        param_space={"job": job.to_dict(), "storage": store.address, "threads": resources.get("cpu", 1),
                     "resources": resources, "own_ray": is_local(), "task": tune.grid_search([t.key for t in todo])},
        tune_config=tune.TuneConfig(max_concurrent_trials=min(concurrent or len(todo), len(todo)), reuse_actors=True),
        run_config=tune.RunConfig(
            name=todo[0].tune_folder, storage_path=store.full(run), storage_filesystem=store.fs, verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
            callbacks=[DriverCallback(progress)],
        ),
    )
    # Tune logs every failed try of a trial with its traceback; raysweep reports the failure itself (its last
    # line, with the fix), so Tune's own error log is kept for RAYSWEEP_DEBUG=1
    quiet = [] if os.environ.get("RAYSWEEP_DEBUG") else [logging.getLogger(n) for n in ("ray.tune", "ray.train",
                                                                                          "ray.air")]
    levels = [(lg, lg.level) for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        with signals.lent_to_library():  # whatever Tune installs, the stop signals stop raysweep again afterwards
            results = tuner.fit()
    except (OSError, EOFError):  # Tune's own state could not be written (or read back half-written)
        if _full(store):
            raise StorageFull(errno.ENOSPC, full_message(store.uri, "Ray Tune's state of the training")) from None
        raise
    finally:
        for lg, level in levels:
            lg.setLevel(level)
    failed = [r for r in results if r.error]
    full = [str(r.error) for r in failed if "no space left" in str(r.error).lower()]
    if full or (failed and _full(store)):
        line = next((ln for ln in (full[0] if full else "").splitlines() if "no space left" in ln.lower()), "")
        raise StorageFull(errno.ENOSPC, line.split("StorageFull: ", 1)[-1].strip() if "StorageFull" in line
                          else full_message(store.uri, "a training's checkpoint or resume state"))
    if failed:
        first = str(failed[0].error).strip().splitlines()
        raise TrainingFailed(f"{len(failed)} training trial(s) of {job.name} failed after retries; the last line of "
                             f"the first error: {first[-1] if first else failed[0].error}. Checkpoints written so far "
                             f"are kept: fix the cause and rerun to resume (RAYSWEEP_DEBUG=1 shows every try's "
                             f"traceback).")


def _full(store: Store) -> bool:
    """A local storage folder with (almost) no space left: the cause of a write error during training."""
    import shutil

    if not store.is_local:
        return False
    path = store.base
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free < (1 << 20)


def DriverCallback(fn):
    """A Tune callback in the driver: hands each trial result to `fn` (if any), and takes the stop signals back
    for the driver (if it had installed them). Tune always takes USR1 to end its run quietly, after which the
    driver would go on to the sweep; raysweep's USR1 (Slurm's notice before the time limit) stops the whole
    command as Ctrl-C does."""
    from ray import tune

    global _DriverCallback
    if _DriverCallback is None:
        class _Driver(tune.Callback):
            def __init__(self, fn, ours):
                self.fn, self.ours = fn, ours

            def __getstate__(self):  # Tune pickles its callbacks into its state; these stay in the driver
                return {"fn": None, "ours": False}

            def setup(self, **info):  # called after Tune installed its own handlers
                if self.ours:
                    signals.install()

            def on_trial_result(self, iteration, trials, trial, result, **info):
                if self.fn:
                    self.fn(result)

        _DriverCallback = _Driver
    return _DriverCallback(fn, signals.installed())


_DriverCallback = None
