"""Where a run's work happens: a local Ray this process starts, or a cluster it joins. The session
owns what it learns there — that the store reaches every node, the dataset's shape as a worker
sees it — and checks each once per run, before any work is started."""
from __future__ import annotations

from raysweep.cluster.checks import check_data_on_worker, check_storage_reaches_nodes
from raysweep.cluster.policy import ResourceWatch, actor_plan, capacity, trial_resources
from raysweep.connect import init_ray, is_local, joins_cluster
from raysweep.errors import SpecError
from raysweep.io.store import Store
from raysweep.progress import say, warn
from raysweep.spec import Job
from raysweep.validate import check_builder


class Session:
    """The run's connection to Ray at `address` (None: $RAY_ADDRESS, else a local Ray)."""

    def __init__(self, job: Job, store: Store, address: str | None, shared_storage: bool):
        self.job, self.store, self.address, self.shared_storage = job, store, address, shared_storage
        self._storage_reached = False  # the store reaches every node (checked once)
        self._checked_on_cluster = False  # ... and the dataset was found on a worker
        self._info = None
        self._mix_checked = False

    @property
    def joins_cluster(self) -> bool:
        return joins_cluster(self.address)

    def data_info(self):
        """Shape, classes and split sizes of the job's dataset: as a worker saw it on a joined cluster,
        else read here (once)."""
        if self._info is None:
            from raysweep.data.registry import dataset_info  # torch

            self._info = dataset_info(self.job.data, store=self.store)
        return self._info

    def preflight(self) -> None:
        """A missing dataset or an unusable store stops here, before any work is started. On a
        cluster the dataset is looked for later, on a node that will run the work (the head usually
        has none); here only the store is checked."""
        if self.joins_cluster:  # a local folder on a multi-node cluster: refused before anything is written
            self.start()
            if not self._storage_reached:
                check_storage_reaches_nodes(self.store, self.shared_storage)
                self._storage_reached = True
        else:
            info = self.data_info()
            check_builder(self.job, info.in_shape, info.num_classes)  # the user's builder returns a module
            if self.job.eval.device == "cuda":
                import torch

                if not torch.cuda.is_available():
                    raise SpecError("eval.device = \"cuda\" but torch sees no CUDA device on this machine; use "
                                    "--set eval.device=auto (CUDA when present) or cpu.")
        self.store.check()
        if self.job.data.source == "store" and not self._mix_checked:  # once per run: the stream's class mix
            from raysweep.data.mix import training_mix_warning  # the data package: torch

            self._mix_checked = True
            text = training_mix_warning(self.store, self.job.data.root or self.job.data.name)
            if text:
                warn(text)

    def start(self) -> None:
        """Start a local Ray or join the cluster (once per process), saying so first: on a loaded machine the
        start takes a while, and a command that says nothing for a minute looks hung."""
        import ray

        if not ray.is_initialized():
            say(f"joining the Ray cluster at {self.address or '$RAY_ADDRESS'}…" if self.joins_cluster else
                "starting Ray on this machine (its CPUs and GPUs)…")
        init_ray(self.address, job=self.job)

    def connect(self, resources: dict) -> None:
        """Start or join Ray; on a joined cluster, check the storage and the dataset where the work
        will run (a task with these resources), once per run."""
        self.start()
        if is_local() or self._checked_on_cluster:
            return

        if not self._storage_reached:
            check_storage_reaches_nodes(self.store, self.shared_storage)
            self._storage_reached = True
        with ResourceWatch(resources.get("gpu", 0), "the dataset check on a worker", say):
            self._info = check_data_on_worker(self.job, resources, self.store)
        self._checked_on_cluster = True

    def trial_resources(self) -> dict:
        """What one training trial holds, connected first (the policy counts what the cluster can grow to)."""
        self.start()
        resources = trial_resources(self.job, capacity())
        world = self.job.resources.workers  # a data-parallel replicate's ranks each hold their share
        self.connect({"cpu": resources["cpu"], "gpu": resources["gpu"] / world})
        return resources

    def actor_plan(self) -> tuple[int, float, float]:
        """(most evaluator actors, GPUs each, CPUs each), connected first."""
        self.start()
        plan = actor_plan(self.job, capacity())
        self.connect({"cpu": plan[2], "gpu": plan[1]})
        return plan
