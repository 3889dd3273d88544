"""Training tasks: what one Ray Tune trial trains. Three kinds, one frozen dataclass each, saying where it
is stored, when it is done and which Tune folder holds its trials (train/tune.py says how each runs):

    Replicate(k)              replicate k from its seeded init (train/loop.py)
    Child(k, step, child)     an instability child spawned from replicate k's checkpoint at `step` (train/spawn.py)
    Bend(sweep, i, j)         a curve sweep's bend between the finals of replicates i and j (train/bend.py)

A task travels to its trial as its `key` (a string in Tune's config: "replicate/3", "child/3/100/0",
"curve/bezier/0/1"); `task_of` is the one place a key is read back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

from raysweep.io import paths
from raysweep.io.runs import is_trained
from raysweep.io.store import Store
from raysweep.spec import Job, bend_hash


def _run(job: Job) -> str:
    return paths.run_dir(job.name, job.hash)


@dataclass(frozen=True)
class Replicate:
    k: int
    tune_folder: ClassVar[str] = "tune"

    @property
    def key(self) -> str:
        return f"replicate/{self.k}"

    @property
    def label(self) -> str:
        return f"replicate {self.k}"

    def folder(self, job: Job) -> str:
        return paths.replicate_dir(_run(job), self.k)

    def done(self, store: Store, job: Job) -> bool:
        return is_trained(store, job, self.k)


@dataclass(frozen=True)
class Child:
    k: int
    step: int
    child: int
    tune_folder: ClassVar[str] = "tune-spawn"

    @property
    def key(self) -> str:
        return f"child/{self.k}/{self.step}/{self.child}"

    @property
    def label(self) -> str:
        return f"child {self.child} of replicate {self.k} from step {self.step}"

    def folder(self, job: Job) -> str:
        return paths.child_dir(_run(job), self.k, self.step, self.child)

    def done(self, store: Store, job: Job) -> bool:
        return store.exists(paths.child_done(_run(job), self.k, self.step, self.child))


@dataclass(frozen=True)
class Bend:
    sweep: str
    i: int
    j: int
    tune_folder: ClassVar[str] = "tune-curve"

    @property
    def key(self) -> str:
        return f"curve/{self.sweep}/{self.i}/{self.j}"

    @property
    def label(self) -> str:
        return f"bend of {self.sweep} between replicates {self.i} and {self.j}"

    def folder(self, job: Job) -> str:
        return paths.bend_dir(_run(job), self.sweep, bend_hash(job.sweep(self.sweep)), self.i, self.j)

    def done(self, store: Store, job: Job) -> bool:
        return store.exists(paths.bend_done(_run(job), self.sweep, bend_hash(job.sweep(self.sweep)), self.i, self.j))


Task = Union[Replicate, Child, Bend]


def task_of(key: str) -> Task:
    """The task a key names (its inverse is `task.key`)."""
    kind, _, rest = key.partition("/")
    if kind == "replicate":
        return Replicate(int(rest))
    if kind == "child":
        k, step, child = (int(v) for v in rest.split("/"))
        return Child(k, step, child)
    if kind == "curve":
        sweep, i, j = rest.rsplit("/", 2)
        return Bend(sweep, int(i), int(j))
    raise ValueError(f"not a training task: {key!r} (replicate/<k>, child/<k>/<step>/<c>, curve/<sweep>/<i>/<j>)")
