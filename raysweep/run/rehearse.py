"""`raysweep run JOB --rehearse`: the job's real plan run end to end before it burns GPU-hours.

The same replicates, as many checkpoints per replicate, the same pairs, α grids, splits and work items
(each sweep's chunk fixed to what the real plan uses), the same resources and accelerator, cluster and
store — through the real planner, Tune, the Ray Data executor, the store and the aggregation — with a
stand-in model (an MLP of a few thousand parameters) and stand-in data (a few seeded examples), so that
the whole plan takes minutes. It writes a run of its own (`<job>-rehearsal/<hash>`), never the real
run's tables. Stages, in order, each printed as it passes:

    cluster      the nodes, their CPUs and GPUs (on an autoscaling cluster with none that runs work: one asked for)
    store        every node writes 1 MiB into the store, reads it back, compares, deletes
    data         the real dataset is readable on every node that runs work
    plan         the real plan, counted from the dataset where the work runs (or its standard size); the stand-in
    train        the replicates (and children, bends) as Tune trials with the job's resources
    checkpoints  every checkpoint read back and checked against its sha256
    sweep        every work item through the actor pool; every planned item of every kind stored exactly once
    aggregate    the tables, timed alone
    projection   the real model timed where a trial would run: the real run's wall time and GPU-hours

A stage that fails stops the rehearsal with the stage, the node and the fix (exit 2); a stage that runs past
its deadline fails naming what it waited for; anything unexpected is a bug, kept whole (run/stages.py). Each
stage is one function of run/rehearsal_stages.py over its `Rehearsal` record; the stand-in is run/standin.py.
"""
from __future__ import annotations

import json

from raysweep.io import paths
from raysweep.run import rehearsal_stages as st
from raysweep.run.rehearsal_stages import Rehearsal
from raysweep.run.stages import Stages, peak_mib
from raysweep.spec import Job


def rehearse(run, address: str | None = None, progress: bool = True, plan_info=None, standard_size: bool = False,
             stage_timeout: float = 1800.0) -> dict:
    """Run `run`'s plan with the stand-in (see the module's docstring); returns the report (also written
    into the rehearsal's own run folder). `plan_info`: plan from these dataset sizes instead of the data
    found (a benchmark of a plan whose dataset is not on the machine); `standard_size`: plan from the
    dataset's standard sizes (ImageNet: 1,281,167 / 50,000), also before the data is staged on the nodes.
    Each stage has `stage_timeout` seconds (the sweep 0.2 s more per work item); 0: no deadline."""
    r = Rehearsal(run, address, progress, plan_info, standard_size, Stages(stage_timeout))
    go = r.stages.run
    go("cluster", lambda: st.cluster(r), "start Ray (or check --address / $RAY_ADDRESS) and run again")
    go("store", lambda: st.store(r), "check --storage (the bucket, its credentials and endpoint)")
    go("data", lambda: st.data(r))
    go("plan", lambda: st.plan(r))
    go("train", lambda: st.train(r), "see the trial's error above; the real run would fail the same way")
    go("checkpoints", lambda: st.checkpoints(r), "a damaged checkpoint names its file above; check the store's health")
    go("sweep", lambda: st.sweep(r), "the failed items' messages above name the cause",
       timeout=stage_timeout + 0.2 * r.facts["work_items"] if stage_timeout > 0 else 0)
    go("aggregate", lambda: st.aggregate(r))
    go("projection", lambda: st.projection(r), "the real model does not build or run on this cluster: see the error")
    return report(r)


def report(r: Rehearsal) -> dict:
    """The rehearsal's report, written beside the stand-in's run."""
    job = r.run.job
    items = max(r.summary.items_total, 1)
    store = r.summary.store
    left = st.nodes_left(r.nodes)
    out = {"job": f"{job.name}/{job.hash}", "run": r.rrun.store.url(r.rrun.dir), "plan": r.facts,
           "checked": r.checked, "stages": r.stages.rows, "driver_peak_mib": peak_mib(),
           "driver_ms_per_item": 1000 * r.driver_cpu_s / items,
           "store": {"requests_per_item": store.get("requests", 0) / items,
                     "bytes_per_item": (store.get("bytes_read", 0) + store.get("bytes_written", 0)) / items,
                     "driver_requests": r.driver_requests, **store},
           "projection": r.projection, "projection_text": r.stages.rows[-1]["note"],
           "nodes_left": [f"{n['ip']} ({n['id'][:12]})" for n in r.nodes if n["id"] in left]}
    out["report_file"] = write_report(r.rrun.store, r.standin, out)
    return out


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
