"""`raysweep run JOB --rehearse`: the job's real plan run end to end before it burns GPU-hours.

The same replicates, as many checkpoints per replicate, the same pairs, α grids, splits and work items
(each sweep's chunk fixed to what the real plan uses), the same resources and accelerator, cluster and
store — through the real planner, Tune, the Ray Data executor, the store and the aggregation — with a
stand-in model (an MLP of a few thousand parameters) and stand-in data (a few seeded examples), so that
the whole plan takes minutes. It writes a run of its own (`<job>-rehearsal/<hash>`), never the real
run's tables. Stages, in order, each printed as it passes:

    plan         the real plan, counted from the dataset where the work runs; the stand-in job
    cluster      the nodes, their CPUs and GPUs
    store        every node writes 1 MiB into the store, reads it back, compares, deletes
    data         the real dataset is readable on every node that runs work
    train        the replicates (and children, bends) as Tune trials with the job's resources
    checkpoints  every checkpoint read back and checked against its sha256
    sweep        every work item through the actor pool; each exactly once
    aggregate    the tables, timed alone
    projection   the real model timed where a trial would run: the real run's wall time and GPU-hours

A stage that fails stops the rehearsal with the stage, the node and the fix (exit 2).
"""
from __future__ import annotations

import json
import math
import resource
import time

from raysweep.cluster import probes
from raysweep.data.types import DatasetInfo
from raysweep.errors import RehearsalFailed, SpecError
from raysweep.io import paths
from raysweep.io.manifests import read_manifests
from raysweep.io.store import IO
from raysweep.progress import say
from raysweep.report.cost import counts
from raysweep.run.projection import project
from raysweep.spec import TRAIN_SUBSET, Job, parse_job
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


class Stages:
    """Times each stage, prints it as it passes, and names the stage in a failure."""

    def __init__(self):
        self.rows: list[dict] = []

    def run(self, name: str, fn, fix: str = ""):
        t = time.perf_counter()
        try:
            out, note = fn()
        except RehearsalFailed:
            raise
        except Exception as exc:  # the stage, its cause and what to do: exit 2, before any real work
            cause = " ".join(str(exc).split()) or type(exc).__name__
            raise RehearsalFailed(f"the rehearsal failed at stage {name}: {cause}{' Fix: ' + fix if fix else ''}") \
                from None
        seconds = time.perf_counter() - t
        self.rows.append({"stage": name, "seconds": round(seconds, 2), "note": note,
                          "driver_peak_mib": round(_peak_mib(), 1)})
        say(f"rehearsal: [{name}] ok in {seconds:.1f} s — {note}")
        return out


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _node_failures(name: str, answers: dict, nodes: list[dict], fix: str) -> None:
    bad = {n: msg for n, (status, msg) in answers.items() if status != "ok"}
    if bad:
        where = {n["id"]: f"{n['ip']} ({n['id'][:12]})" for n in nodes}
        shown = "; ".join(f"{where.get(n, n[:12])}: {msg}" for n, msg in list(bad.items())[:5])
        raise RehearsalFailed(f"the rehearsal failed at stage {name} on {len(bad)} of {len(answers)} node(s) — "
                              f"{shown}. Fix: {fix}")


def write_report(store, job: Job, report: dict) -> str:
    path = paths.rehearsal_report(paths.run_dir(job.name, job.hash))
    store.write_bytes(path, json.dumps(report, indent=1, default=str).encode())
    return store.url(path)


def summary_lines(report: dict) -> list[str]:
    """The report a person reads at the end."""
    p, c = report["plan"], report["checked"]
    lines = [f"rehearsal of {report['job']} — the real plan: {p['replicates']} replicates × {p['checkpoints']} "
             f"checkpoints, {p['work_items']:,} work items, {p['evaluations']:,} evaluations; its own run "
             f"{report['run']}",
             "checked:"]
    lines += [f"  {k}: {v}" for k, v in c.items()]
    lines.append("time per stage (s): " + ", ".join(f"{r['stage']} {r['seconds']:.1f}" for r in report["stages"]))
    s = report["store"]
    lines.append(f"driver: peak memory {report['driver_peak_mib']:.0f} MiB, {report['driver_ms_per_item']:.2f} ms per "
                 f"work item; store: {s['requests_per_item']:.1f} requests and {s['bytes_per_item'] / 1024:.1f} KiB "
                 f"per work item (evaluators)")
    lines.append("projection: " + report["projection_text"])
    if report.get("nodes_left"):
        lines.append(f"nodes that left during the rehearsal: {', '.join(report['nodes_left'])} (their work was "
                     f"planned again; every item is stored once)")
    return lines



def rehearse(run, address: str | None = None, progress: bool = True, plan_info=None) -> dict:
    """Run `run`'s plan with the stand-in (see the module's docstring); returns the report (also written
    into the rehearsal's own run folder). `plan_info`: plan from these dataset sizes instead of the data
    found (a benchmark of a plan whose dataset is not on the machine)."""
    from raysweep.run.core import Run

    stages, session = Stages(), run.session(address)
    checked: dict[str, str] = {}
    work_nodes: list[dict] = []

    def cluster():
        session.start()
        nodes = probes.alive_nodes()
        work_nodes.extend(n for n in nodes if n["cpus"] or n["gpus"])
        checked["nodes"] = (f"{len(nodes)} ({sum(n['cpus'] for n in nodes):g} CPUs, "
                            f"{sum(n['gpus'] for n in nodes):g} GPUs; {len(work_nodes)} run work)")
        return nodes, checked["nodes"]
    nodes = stages.run("cluster", cluster, "start Ray (or check --address / $RAY_ADDRESS) and run again")

    def store():
        run.store.check()
        folder = paths.rehearsal_dir(run.dir)
        answers = probes.on_each_node(probes.store_roundtrip, run.store.address, folder, nodes=nodes)
        _node_failures("store", answers, nodes, "give every node the store: credentials, endpoint "
                       "($AWS_ENDPOINT_URL), network; for a folder, mount it on every node and say --shared-storage")
        checked["store"] = f"{len(answers)} node(s) wrote 1 MiB, read it back equal, deleted it"
        return None, checked["store"]
    stages.run("store", store, "check --storage (the bucket, its credentials and endpoint)")

    def data():
        answers = probes.on_each_node(probes.data_here, _data_dict(run.job), run.store.address, nodes=work_nodes)
        _node_failures("data", answers, work_nodes, f"put {run.job.data.name} where data.root says on those nodes "
                       f"(or pack it into the store once: `raysweep data pack SOURCE --name {run.job.data.name}` and "
                       f"--set data.source=store)")
        found = next(v for _, v in answers.values())
        shards = f", {found['shards']} shards (the first of each split read back)" if "shards" in found else ""
        checked["data"] = f"{run.job.data.name} readable on {len(answers)} node(s): {found['sizes']}{shards}"
        return found, checked["data"]
    found = stages.run("data", data)
    info = plan_info or DatasetInfo(tuple(found["in_shape"]), found["classes"], found["sizes"])

    def plan():
        c = counts(run.job, info=info)
        job = standin_job(run.job, info)
        sizes = {"train": EXAMPLES, "test": EXAMPLES, **{x: EXAMPLES for x in job.data.options()["extra"]}}
        mine = counts(job, info=DatasetInfo((FEATURES,), info.num_classes, sizes))
        same = (c["checkpoints_per_replicate"], sum(s["work_items"] for s in c["sweeps"]), c["evaluations"])
        theirs = (mine["checkpoints_per_replicate"], sum(s["work_items"] for s in mine["sweeps"]), mine["evaluations"])
        if same != theirs:
            raise RuntimeError(f"the stand-in plan differs from the real one (checkpoints, items, evaluations: "
                               f"{theirs} vs {same}); this is a raysweep bug")
        facts = {"replicates": run.job.replicates, "checkpoints": same[0], "work_items": same[1],
                 "evaluations": same[2], "iterations": c["iterations"], "examples_forwarded": c["examples_forwarded"]}
        return (job, facts, c), (f"{facts['replicates']} replicates × {same[0]} checkpoints, {same[1]:,} work items, "
                                 f"{same[2]:,} evaluations — the stand-in {job.name}/{job.hash} has as many")
    job, facts, real_counts = stages.run("plan", plan)
    say(f"rehearsal: the real plan is {facts['work_items']:,} work items; the stand-in runs every one of them")
    rrun = Run(job, run.store, run.shared_storage)

    def train():
        trained = rrun.train(progress=progress, address=address)
        return trained, f"{len(trained)} replicate(s) trained as Tune trials with the job's resources"
    stages.run("train", train, "see the trial's error above; the real run would fail the same way")

    def verify():
        from raysweep.io.checkpoints import load_tensors  # torch

        seen, devices, n = set(), set(), 0
        for k in rrun.replicates:
            for m in read_manifests(rrun.store, job, k).values():
                load_tensors(rrun.store, m["path"], m["sha256"])
                n += 1
                seen.add(m.get("node_id", "")[:12])
                devices.add(f"{m.get('device', '?')}{' GPUs ' + m['gpu_ids'] if m.get('gpu_ids') else ''}")
        checked["trials"] = f"{n} checkpoints read back against their sha256; trials ran on {len(seen)} node(s), " \
                            f"devices {sorted(devices)}"
        return n, checked["trials"]
    stages.run("checkpoints", verify, "a damaged checkpoint names its file above; check the store's health")
    io0, cpu0 = dict(IO), time.process_time()  # the driver's own work for the sweep: planning, dispatch, results

    def sweep():
        summary = rrun.sweep(progress=progress, address=address)
        if summary.failures:
            raise RuntimeError(f"{len(summary.failures)} work item(s) failed: {summary.failures[0]['message']}")
        pts = rrun.table("points")
        keys = ["sweep", "item", "replicate_a", "replicate_b", "step_a", "step_b", "alpha", "split"]
        once = pts.group_by(keys).len()["len"].max() == 1 if pts.height else True
        actors = pts.group_by("node_id", "device", "gpu_ids").len().rows() if pts.height else []
        checked["sweep"] = (f"{summary.items_total:,} work items, each stored once ({'yes' if once else 'NO'}); "
                            f"evaluated on {len({a[0] for a in actors})} node(s), devices "
                            f"{sorted({a[1] + (' GPU ' + a[2] if a[2] else '') for a in actors})}")
        if not once:
            raise RuntimeError("a work item's points are stored twice; this is a raysweep bug")
        return summary, checked["sweep"]
    summary = stages.run("sweep", sweep, "the failed items' messages above name the cause")
    cpu = time.process_time() - cpu0

    def aggregate():
        tables = rrun.aggregate()
        return tables, f"{sum(t.height for t in tables.values()):,} rows in {len(tables)} tables"
    stages.run("aggregate", aggregate)
    projection = stages.run("projection", lambda: project(run.job, info, real_counts, nodes),
                            "the real model does not build or run on this cluster: see the error")
    projection_text = stages.rows[-1]["note"]
    left = _nodes_left(nodes)
    items = max(summary.items_total, 1)
    report = {"job": f"{run.job.name}/{run.job.hash}", "run": rrun.store.url(rrun.dir), "plan": facts,
              "checked": checked, "stages": stages.rows, "driver_peak_mib": _peak_mib(),
              "driver_ms_per_item": 1000 * cpu / items,
              "store": {"requests_per_item": summary.store.get("requests", 0) / items,
                        "bytes_per_item": (summary.store.get("bytes_read", 0) + summary.store.get("bytes_written", 0))
                        / items, "driver_requests": IO["requests"] - io0["requests"], **summary.store},
              "projection": projection, "projection_text": projection_text,
              "nodes_left": [f"{n['ip']} ({n['id'][:12]})" for n in nodes if n["id"] in left]}
    report["report_file"] = write_report(rrun.store, job, report)
    return report


def _ping() -> bool:
    return True


def _nodes_left(nodes: list[dict]) -> set[str]:
    """The nodes of the start that are gone now: not alive, or not answering (Ray marks a dead node after
    its health checks; a node whose raylet was killed a moment ago may still be listed)."""
    alive = {n["id"] for n in probes.alive_nodes()}
    still = [n for n in nodes if n["id"] in alive]
    answers = probes.on_each_node(_ping, nodes=still, timeout=20) if still else {}
    return {n["id"] for n in nodes} - {n for n, (status, _) in answers.items() if status == "ok"}


def _data_dict(job: Job) -> dict:
    import dataclasses

    return dataclasses.asdict(job.data)
