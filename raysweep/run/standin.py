"""The rehearsal's stand-in (run/rehearse.py): the job's plan — replicates, checkpoints per replicate, pairs, α,
splits, work items, resources — with an MLP of a few thousand parameters on a few seeded examples."""
from __future__ import annotations

import math

from raysweep.spec import TRAIN_SUBSET, Job, SpecError, parse_job
from raysweep.train.schedule import checkpoint_steps
from raysweep.work.items import chunk_size

FEATURES, HIDDEN, BATCH, EXAMPLES = 16, 8, 4, 8  # the stand-in: 16 features, 8 hidden units, 2 updates an epoch


def standin_job(job: Job, info) -> Job:
    """The rehearsal's job: `job`'s plan (replicates, checkpoints per replicate, pairs, α, splits, work
    items, resources) with the stand-in model and data."""
    if job.external or job.train.init_from:
        raise SpecError(f"{job.name} starts from checkpoints trained elsewhere (external checkpoints or "
                        f"train.init_from): --rehearse rehearses jobs that train their replicates from a seed.")
    real = checkpoint_steps(job.train, info.sizes["train"])
    per_epoch = math.ceil(EXAMPLES / BATCH)
    epochs = max(1, math.ceil((len(real) - 1) / per_epoch))
    index = {s: i for i, s in enumerate(real)}  # a spawn step of the real schedule -> the stand-in's step
    raw = {k: v for k, v in job.to_dict().items() if k not in ("external", "digests")}
    splits = sorted({sp for s in job.sweeps for sp in s.splits} | set(job.train.log_splits))
    extra = [s for s in splits if s not in ("train", "test", TRAIN_SUBSET)]  # the data's own extra splits
    raw.update(name=f"{job.name}-rehearsal", description=f"rehearsal of {job.name}/{job.hash}")
    raw["data"] = {"name": "standin", "kwargs": {"classes": info.num_classes, "features": FEATURES,
                                                 "train": EXAMPLES, "test": EXAMPLES,
                                                 "extra": extra}}
    raw["model"] = {"name": "mlp", "hidden": [HIDDEN], "batchnorm": any(s.bn == "reset" for s in job.sweeps)}
    raw["train"] = {**raw["train"], "batch_size": BATCH, "epochs": epochs, "checkpoints": "list",
                    "steps": list(range(len(real) - 1)), "freeze": [], "max_norm": [], "milestones": [],
                    "warmup_epochs": 0.0, "micro_batch": 0, "channels_last": False, "lr": 0.01,
                    "loss": "auto" if ":" in raw["train"]["loss"] else raw["train"]["loss"]}
    raw["eval"] = {**raw["eval"], "batch_size": 64, "compile": False}
    sweeps = []
    for s, r in zip(job.sweeps, raw["sweeps"]):
        missing = [v for v in s.spawn_steps if v not in index]
        if missing:
            raise SpecError(f"sweep {s.name}: spawn steps {missing} are not checkpoints of {job.name}'s schedule")
        sweeps.append({**r, "chunk": chunk_size(job, s, info), "spawn_steps": [index[v] for v in s.spawn_steps],
                       "params": {"include": [], "exclude": []},
                       **({"curve": {**r["curve"], "epochs": 1}} if s.kind == "curve" else {})})
    raw["sweeps"] = sweeps
    return parse_job(raw, f"the rehearsal of {job.name}")
