"""Prepare: write what planned items only referenced — I6's random points, planes' directions, T3's path
projections — each once, seeded, beside the checkpoints, by the `prepare` of each kind that has one
(``raysweep/kinds/``). Runs in the driver before evaluation; read-only commands never call it."""
from __future__ import annotations

from raysweep.spec import Job
from raysweep.work.kinds import kind


def prepare(job: Job, store, items: list, info=None) -> list:
    """The items with every referenced file written and its sha256 filled in: each kind's `prepare` over its own
    items, in the plan's order."""
    if info is None:  # the dataset's shape as read here (the driver passes what the workers see)
        from raysweep.data.registry import dataset_info

        info = dataset_info(job.data, standard_if_missing=True, store=store)
    ready = {}
    for name in dict.fromkeys(it.sweep_kind for it in items):
        mine = [it for it in items if it.sweep_kind == name]
        fn = kind(name).prepare
        ready.update(zip((id(it) for it in mine), fn(job, store, mine, info) if fn else mine))
    return [ready[id(it)] for it in items]
