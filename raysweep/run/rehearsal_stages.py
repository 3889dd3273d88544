"""The rehearsal's stages (run/rehearse.py), one function each over the `Rehearsal` record, in the order they
run: each reads what earlier stages found, records what it finds, tells the record what it waits on before
each blocking step, and returns its one-line note. A refusal raises RehearsalFailed (or a SpecError /
StoreError the stage runner turns into one); anything else is a bug and propagates whole."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from raysweep.data.registry import STANDARD
from raysweep.data.types import DatasetInfo
from raysweep.errors import RehearsalFailed, SpecError
from raysweep.io import paths
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.io.store import IO
from raysweep.progress import say
from raysweep.report.cost import counts
from raysweep.run import probes
from raysweep.run.core import Run
from raysweep.run.projection import project
from raysweep.run.stages import Stages
from raysweep.run.standin import EXAMPLES, FEATURES, standin_job
from raysweep.spec import Job
from raysweep.work.stored import stored_counts


@dataclass
class Rehearsal:
    """What the stages share: the real run and where it runs (in), what each stage found (out)."""
    run: object  # the real run (run/core.Run): its job, store and session
    address: str | None = None
    progress: bool = True
    plan_info: object = None  # DatasetInfo to plan from instead of the data found (benchmarks)
    standard_size: bool = False  # plan at the dataset's standard size, also before the data is staged
    stages: Stages = field(default_factory=Stages)
    nodes: list = field(default_factory=list)  # every node alive at the start
    work_nodes: list = field(default_factory=list)  # those with CPUs or GPUs
    checked: dict = field(default_factory=dict)  # what each check found, in words (the report's "checked")
    found: dict | None = None  # the dataset as a node saw it (None: not checked)
    info: object = None  # the DatasetInfo the plan is counted from
    standin: Job | None = None
    facts: dict = field(default_factory=dict)  # the real plan's numbers
    real_counts: dict = field(default_factory=dict)
    rrun: object = None  # the stand-in's run
    summary: object = None  # the sweep's RunSummary
    driver_cpu_s: float = 0.0
    driver_requests: int = 0
    projection: dict | None = None

    def wait_for(self, text: str, echo: bool = False) -> None:
        """What the stage running now waits on (named if its deadline passes)."""
        self.stages.waiting = text
        if echo:
            say(f"rehearsal: waiting for {text}")


def cluster(r: Rehearsal) -> tuple[list, str]:
    """Start Ray or join the cluster; the nodes, and those that run work (asked of the autoscaler if none)."""
    r.wait_for("Ray to start (or the cluster at --address to answer)")
    r.run.session(r.address).start()
    r.nodes, r.work_nodes = probes.nodes_that_work(lambda text: r.wait_for(text, echo=True))
    n = r.nodes
    r.checked["nodes"] = (f"{len(n)} ({sum(x['cpus'] for x in n):g} CPUs, {sum(x['gpus'] for x in n):g} GPUs; "
                          f"{len(r.work_nodes)} run work)")
    return n, r.checked["nodes"]


def store(r: Rehearsal) -> tuple[None, str]:
    """Every node writes 1 MiB into the store, reads it back, compares, deletes — in the rehearsal's own folder,
    removed afterwards even where a node failed."""
    s = r.run.store
    s.check()
    folder = paths.rehearsal_probes(r.run.job.name)
    r.wait_for(f"every node's 1 MiB round trip through {s.url('')}")
    try:
        answers = probes.on_each_node(probes.store_roundtrip, s.address, folder, nodes=r.nodes)
    finally:
        s.delete(folder)
    node_failures("store", answers, r.nodes, "give every node the store: credentials, endpoint ($AWS_ENDPOINT_URL), "
                  "network; for a folder, mount it on every node and say --shared-storage")
    r.checked["store"] = f"{len(answers)} node(s) wrote 1 MiB, read it back equal, deleted it"
    return None, r.checked["store"]


def data(r: Rehearsal) -> tuple[dict | None, str]:
    """The real dataset readable on every node that runs work (with --standard-size, its absence is a note)."""
    job = r.run.job
    r.wait_for(f"{job.data.name} to be read on {len(r.work_nodes)} node(s)")
    answers = probes.on_each_node(probes.data_here, dataclasses.asdict(job.data), r.run.store.address,
                                  nodes=r.work_nodes)
    fix = (f"put {job.data.name} where data.root says on those nodes (or pack it into the store once: `raysweep data "
           f"pack SOURCE --name {job.data.name}` and --set data.source=store)")
    bad = sum(status != "ok" for status, _ in answers.values())
    if r.standard_size and bad:
        r.checked["data"] = (f"NOT checked: {job.data.name} is not readable on {bad} of {len(answers)} node(s) yet "
                             f"(--standard-size plans without it); before the real run: {fix}")
        return None, r.checked["data"]
    node_failures("data", answers, r.work_nodes, fix)
    r.found = next(v for _, v in answers.values())
    shards = f", {r.found['shards']} shards (the first of each split read back)" if "shards" in r.found else ""
    r.checked["data"] = f"{job.data.name} readable on {len(answers)} node(s): {r.found['sizes']}{shards}"
    return r.found, r.checked["data"]


def plan(r: Rehearsal) -> tuple[Rehearsal, str]:
    """The real plan counted, and the stand-in job that has as many checkpoints, items and evaluations."""
    r.info, size_note = plan_info(r.run.job, r.found, r.plan_info, r.standard_size)
    c = counts(r.run.job, info=r.info)
    job = standin_job(r.run.job, r.info)
    sizes = {"train": EXAMPLES, "test": EXAMPLES, **{x: EXAMPLES for x in job.data.options()["extra"]}}
    mine = counts(job, info=DatasetInfo((FEATURES,), r.info.num_classes, sizes))
    same = (c["checkpoints_per_replicate"], sum(s["work_items"] for s in c["sweeps"]), c["evaluations"])
    theirs = (mine["checkpoints_per_replicate"], sum(s["work_items"] for s in mine["sweeps"]), mine["evaluations"])
    if same != theirs:
        raise RuntimeError(f"the stand-in plan differs from the real one (checkpoints, items, evaluations: "
                           f"{theirs} vs {same}); this is a raysweep bug")
    r.standin, r.real_counts = job, c
    r.facts = {"replicates": r.run.job.replicates, "checkpoints": same[0], "work_items": same[1],
               "evaluations": same[2], "iterations": c["iterations"], "examples_forwarded": c["examples_forwarded"],
               "dataset_sizes": dict(r.info.sizes)}
    if size_note:
        r.checked["plan"] = size_note
    r.rrun = Run(job, r.run.store, r.run.shared_storage)
    say(f"rehearsal: the real plan is {same[1]:,} work items; the stand-in runs every one of them")
    note = (f"{r.facts['replicates']} replicates × {same[0]} checkpoints, {same[1]:,} work items, {same[2]:,} "
            f"evaluations — the stand-in {job.name}/{job.hash} has as many")
    return r, note + (f". {size_note}" if size_note else "")


def train(r: Rehearsal) -> tuple[list, str]:
    r.wait_for("the Tune trials (each with the job's resources: `ray status` shows what is pending)")
    trained = r.rrun.train(progress=r.progress, address=r.address)
    return trained, f"{len(trained)} replicate(s) trained as Tune trials with the job's resources"


def checkpoints(r: Rehearsal) -> tuple[int, str]:
    """Every checkpoint read back against its sha256; the nodes and devices the trials ran on."""
    seen, devices, n = set(), set(), 0
    for k in r.rrun.replicates:
        for m in read_manifests(r.rrun.store, r.standin, k).values():
            load_tensors(r.rrun.store, m["path"], m["sha256"])
            n += 1
            seen.add(m.get("node_id", "")[:12])
            devices.add(f"{m.get('device', '?')}{' GPUs ' + m['gpu_ids'] if m.get('gpu_ids') else ''}")
    r.checked["trials"] = (f"{n} checkpoints read back against their sha256; trials ran on {len(seen)} node(s), "
                           f"devices {sorted(devices)}")
    return n, r.checked["trials"]


def sweep(r: Rehearsal) -> tuple[object, str]:
    """Every work item through the actor pool; every planned item of every kind stored exactly once."""
    io0, cpu0 = dict(IO), time.process_time()  # the driver's own work: planning, dispatch, results
    r.wait_for("the evaluator actors (`ray status` shows what is pending)")
    r.summary = r.rrun.sweep(progress=r.progress, address=r.address)
    r.driver_cpu_s, r.driver_requests = time.process_time() - cpu0, IO["requests"] - io0["requests"]
    if r.summary.failures:
        raise RehearsalFailed(f"the rehearsal failed at stage sweep: {len(r.summary.failures)} work item(s) failed, "
                              f"e.g. {r.summary.failures[0]['message']}")
    r.checked["sweep"] = stored_once(r.rrun, r.summary)
    return r.summary, r.checked["sweep"]


def aggregate(r: Rehearsal) -> tuple[dict, str]:
    tables = r.rrun.aggregate()
    return tables, f"{sum(t.height for t in tables.values()):,} rows in {len(tables)} tables"


def projection(r: Rehearsal) -> tuple[dict | None, str]:
    r.projection, text = project(r.run.job, r.info, r.real_counts, r.nodes, r.wait_for)
    return r.projection, text


# ---------------------------------------------------------------------------------------------- what they share

def node_failures(name: str, answers: dict, nodes: list[dict], fix: str) -> None:
    bad = {n: msg for n, (status, msg) in answers.items() if status != "ok"}
    if bad:
        where = {n["id"]: f"{n['ip']} ({n['id'][:12]})" for n in nodes}
        shown = "; ".join(f"{where.get(n, n[:12])}: {msg}" for n, msg in list(bad.items())[:5])
        raise RehearsalFailed(f"the rehearsal failed at stage {name} on {len(bad)} of {len(answers)} node(s) — "
                              f"{shown}. Fix: {fix}")


def plan_info(job, found: dict | None, given, standard_size: bool) -> tuple[DatasetInfo, str]:
    """The dataset sizes the plan is counted from, and a note when they are far from the dataset's own."""
    if given is not None:
        return given, ""
    standard = STANDARD.get(job.data.name) if job.data.source == "files" else None
    if standard_size:
        if standard is None:
            raise SpecError(f"--standard-size: raysweep knows no standard size of dataset {job.data.name!r} (it knows "
                            f"{', '.join(STANDARD)}); rehearse with the data in place instead")
        return standard, f"planned at {job.data.name}'s standard size {_sizes(standard.sizes)} (--standard-size)"
    info = DatasetInfo(tuple(found["in_shape"]), found["classes"], found["sizes"])
    if standard and info.sizes.get("train", 0) * 10 < standard.sizes["train"]:
        return info, (f"NOTE: the data at data.root holds {_sizes(info.sizes)} examples where {job.data.name} has "
                      f"{_sizes(standard.sizes)}: this plan follows the folder, not the full dataset; "
                      f"--standard-size rehearses the full-size plan")
    return info, ""


def _sizes(sizes: dict) -> str:
    return " / ".join(f"{v:,}" for v in sizes.values())


def stored_once(rrun, summary) -> str:
    """Every planned item of every kind stored exactly once (its key named when not), and where they ran."""
    planned = rrun.plan()
    counts_: dict[str, int] = {}
    for folder in sorted({it.path.rsplit("/", 1)[0] for it in planned}):
        counts_.update(stored_counts(rrun.store, folder))
    missing = [it.key for it in planned if counts_.get(it.path, 0) == 0]
    twice = sorted(p.rsplit("/", 1)[-1] for p, n in counts_.items() if n > 1)
    if missing or twice:
        raise RehearsalFailed(
            f"the rehearsal failed at stage sweep: {len(missing)} planned work item(s) not stored "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}) and {len(twice)} stored more than once "
            f"({', '.join(twice[:5])}); this is a raysweep bug: rerun with RAYSWEEP_DEBUG=1 and report it")
    pts = rrun.table("points")
    actors = pts.group_by("node_id", "device", "gpu_ids").len().rows() if pts.height else []
    kinds = sorted({type(it).__name__.removesuffix("Item").lower() for it in planned})
    return (f"{len(planned):,} planned work items ({', '.join(kinds)}) + {summary.refined} refined, each stored "
            f"once (yes); lines evaluated on {len({a[0] for a in actors})} node(s), devices "
            f"{sorted({a[1] + (' GPU ' + a[2] if a[2] else '') for a in actors})}")


def _ping() -> bool:
    return True


def nodes_left(nodes: list[dict]) -> set[str]:
    """The nodes of the start that are gone now: not alive, or not answering (Ray marks a dead node after
    its health checks; a node whose raylet was killed a moment ago may still be listed)."""
    alive = {n["id"] for n in probes.alive_nodes()}
    still = [n for n in nodes if n["id"] in alive]
    answers = probes.on_each_node(_ping, nodes=still, timeout=20) if still else {}
    return {n["id"] for n in nodes} - {n for n, (status, _) in answers.items() if status == "ok"}
