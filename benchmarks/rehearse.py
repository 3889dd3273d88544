"""Benchmark 12 — `raysweep run imagenet_resnet50 --rehearse` at its full plan and beyond: a Ray cluster of
simulated GPU nodes on this machine (ray.cluster_utils.Cluster: a head with 0 CPUs and worker nodes of 1 CPU
and 1 simulated GPU), the store on a local S3 server (moto, as the tests use). The plan is ImageNet's (1,281,167
training and 50,000 validation images: 3 replicates × 124 checkpoints; 100 α per line = 37,500 work items); the
data stage reads a small ImageNet-format folder (ImageNet itself is not on this machine). Scales: 4× = 400 α,
16× = 400 α and 4× the epochs (463 checkpoints).

    python benchmarks/rehearse.py [--scales 1,4,16] [--execute 1]   # --execute: the scales run end to end;
                                                                    # the others are planned and dispatched only
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from common import publish, table  # noqa: E402

SCALES = {1: (100, 90), 4: (400, 90), 16: (400, 360)}  # scale -> (α per line, epochs)
SCALES[0] = (4, 90)  # a 1/25 plan (1,500 items) to see the rate before a long run: --scales 0
SCALES[5] = (20, 90)  # a 1/5 plan (7,500 items): with 0 and 1, the growth of executed rehearsals
LABELS = {0: "1/25×", 5: "1/5×"}


def overrides(scale: int, imagenet: Path) -> list[str]:
    alphas, epochs = SCALES[scale]
    return [f"data.root={imagenet}", "resources.cpus_per_trial=1", f"train.epochs={epochs}",
            f"sweeps.init_to_final.alpha.num={alphas}", f"sweeps.step_to_final.alpha.num={alphas}"]


def plan_only(scale: int, imagenet: Path, storage: str) -> dict:
    """The driver's side alone at a scale too big to evaluate here: the stand-in's plan built, its items
    checked against the store (none stored), encoded for Ray Data — time and peak memory."""
    import raysweep
    from raysweep.data.registry import STANDARD
    from raysweep.run.standin import standin_job
    from raysweep.sweep.planner import missing, plan
    from raysweep.work.items import to_json

    run = raysweep.open("imagenet_resnet50", storage, overrides(scale, imagenet))
    t = time.perf_counter()
    job = standin_job(run.job, STANDARD["imagenet"])
    from raysweep.train.loop import train_replicate  # the stand-in's checkpoints: planning needs their manifests

    for k in range(job.replicates):
        train_replicate(job, k, run.store)
    t_train = time.perf_counter() - t
    from raysweep.data.registry import dataset_info

    t = time.perf_counter()
    items = plan(job, run.store, list(range(job.replicates)), dataset_info(job.data))
    t_plan = time.perf_counter() - t
    t = time.perf_counter()
    todo = missing(items, run.store, job)
    t_missing = time.perf_counter() - t
    t = time.perf_counter()
    encoded = [to_json(it) for it in todo]
    t_encode = time.perf_counter() - t
    return {"items": len(items), "plan_s": t_plan, "missing_s": t_missing, "encode_s": t_encode,
            "train_s": t_train, "bytes": sum(len(e) for e in encoded),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def execute(scale: int, imagenet: Path, storage: str, address: str) -> dict:
    import raysweep
    from raysweep.data.registry import STANDARD

    run = raysweep.open("imagenet_resnet50", storage, overrides(scale, imagenet))
    t = time.perf_counter()
    from raysweep.run.rehearse import rehearse

    report = rehearse(run, address, progress=True, plan_info=STANDARD["imagenet"])
    report["wall_s"] = time.perf_counter() - t
    return report


def child(args) -> None:
    """One scale in a fresh interpreter (peak memory is this process's)."""
    from datafiles import write_imagenet

    work = Path(args.work)
    imagenet = write_imagenet(work / "imagenet") if not (work / "imagenet").exists() else work / "imagenet"
    if args.mode == "plan":
        out = plan_only(args.scale, imagenet, f"{work}/plan-{args.scale}")
    else:
        out = execute(args.scale, imagenet, args.storage, args.address)
    print("RESULT " + json.dumps(out, default=str))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", default="1,4,16")
    p.add_argument("--execute", default="1", help="scales run end to end (others: planned and dispatched only)")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--section", default="rehearse", choices=["rehearse", "growth"],
                   help="growth: the README's section of smaller plans run end to end (--scales 0,5 --execute 0,5)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="plan", help=argparse.SUPPRESS)
    p.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--work", default="", help=argparse.SUPPRESS)
    p.add_argument("--storage", default="", help=argparse.SUPPRESS)
    p.add_argument("--address", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    import uuid

    import boto3
    from conftest import free_port, start_moto  # the tests' S3 server: moto_server on 127.0.0.1
    from ray.cluster_utils import Cluster

    port = free_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    moto = start_moto(port)
    scales = [int(s) for s in args.scales.split(",")]
    runs = {int(s) for s in args.execute.split(",") if s}
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as work:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        try:
            for scale in scales:
                bucket = f"rehearse-{uuid.uuid4().hex[:8]}"
                boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
                mode = "run" if scale in runs else "plan"
                cmd = [sys.executable, __file__, "--child", "--mode", mode, "--scale", str(scale), "--work", work,
                       "--storage", f"s3://{bucket}/runs", "--address", cluster.address]
                t = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True)
                line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
                if r.returncode or line is None:
                    raise SystemExit(f"scale {scale} failed:\n{r.stderr[-4000:]}")
                results[scale] = {**json.loads(line[7:]), "mode": mode, "total_s": time.perf_counter() - t}
                print(f"scale {scale}: {results[scale]}", flush=True)
        finally:
            cluster.shutdown()
            moto.terminate()
    for scale in scales:
        r, label = results[scale], LABELS.get(scale, f"{scale}×")
        if r["mode"] == "run":
            st = {s["stage"]: s["seconds"] for s in r["stages"]}
            rows.append([label, f"{r['plan']['work_items']:,}", "end to end", f"{r['wall_s']:.0f}",
                         f"{r['driver_ms_per_item']:.2f}", f"{r['driver_peak_mib']:,.0f}",
                         f"{r['store']['requests_per_item']:.1f} / {r['store']['bytes_per_item'] / 1024:.1f} KiB",
                         f"{st.get('sweep', 0):.0f}", f"{st.get('aggregate', 0):.1f}"])
        else:
            per = 1000 * (r["plan_s"] + r["missing_s"] + r["encode_s"]) / r["items"]
            rows.append([label, f"{r['items']:,}", "planned + checked + encoded", "—", f"{per:.2f}",
                         f"{r['peak_mib']:,.0f}", "—", "—", "—"])
    title = ("### 12. Rehearsal at scale — `raysweep run imagenet_resnet50 --rehearse`" if args.section == "rehearse"
             else "### 12b. Rehearsal growth, executed — smaller plans of the same job end to end")
    text = (f"{title}\n\n`python benchmarks/rehearse.py {' '.join(sys.argv[1:])}`".rstrip() + " (a head and "
            f"{args.nodes} simulated GPU nodes of 1 CPU on this machine, the store on moto's S3 server)\n\n"
            + table(["scale", "work items", "how", "wall s", "driver ms / item", "driver peak MiB",
                     "store requests / bytes per item", "sweep s", "aggregate s"], rows))
    publish("rehearse" if args.section == "rehearse" else "rehearse-growth", text, args.no_write)


if __name__ == "__main__":
    main()
