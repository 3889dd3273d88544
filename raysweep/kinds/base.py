"""What every kind's planner reads (`Context`: the job, the store, each replicate's checked manifests, the
data's size) and the plain helpers kinds share. The vocabulary of a kind module, beside work/kinds.py's
`Kind` record and `register`."""
from __future__ import annotations

from raysweep.io import paths
from raysweep.io.manifests import read_manifests
from raysweep.io.store import Store
from raysweep.spec import Job
from raysweep.work.items import Endpoint


class Context:
    """What every kind's `plan` reads: the job, the store, each replicate's checked manifests (its
    checkpoints), their finals, and the dataset's shape and split sizes as the workers see it (`info`)."""

    def __init__(self, job: Job, store: Store, replicates: list[int], info):
        self.job, self.store, self.info = job, store, info
        self.run = paths.run_dir(job.name, job.hash)
        self.manifests = {k: read_manifests(store, job, k) for k in replicates}
        self.finals = {k: self.endpoint(k, max(m)) for k, m in self.manifests.items()}

    def endpoint(self, k: int, step: int) -> Endpoint:
        m = self.manifests[k][step]
        return Endpoint(k, step, m["path"], m["sha256"])

    def trajectory(self, k: int) -> tuple[Endpoint, ...]:
        return tuple(self.endpoint(k, s) for s in sorted(self.manifests[k]))
