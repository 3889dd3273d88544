"""Run by test_cluster.py in a fresh interpreter: a head (0 CPUs) + 2 worker Ray cluster on this
machine (ray.cluster_utils.Cluster) whose node processes do NOT have AWS_ENDPOINT_URL; only this
driver does. Checks storage propagation, the local-storage refusal and the data check on a worker."""
import json
import os
import sys

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
endpoint = os.environ.pop("AWS_ENDPOINT_URL")  # the nodes start without it

import psutil  # noqa: E402
import ray  # noqa: E402
from clusters import local_cluster  # noqa: E402

from raysweep.api import Run  # noqa: E402
from raysweep.io.store import Store, StoreError  # noqa: E402
from raysweep.spec import parse_job  # noqa: E402

raw, bucket, local_dir, report_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
cluster = local_cluster(workers=2)
out = {}
try:
    raylets = [p for p in psutil.process_iter(["cmdline"]) if "raylet/raylet" in " ".join(p.info["cmdline"] or [])
               and cluster.gcs_address.split(":")[-1] in " ".join(p.info["cmdline"] or [])]
    out["raylets"] = len(raylets)
    out["raylets_with_endpoint"] = sum("AWS_ENDPOINT_URL" in p.environ() for p in raylets)
    os.environ["AWS_ENDPOINT_URL"] = endpoint  # the driver's own setting, as on a laptop or a head node

    from raysweep.connect import init_ray

    init_ray(cluster.address)
    job = parse_job(raw)
    summary = Run(job, Store(f"s3://{bucket}/sweeps")).run(progress=False, report=False)
    out["items"] = summary.items_total
    out["failures"] = len(summary.failures)

    @ray.remote(num_cpus=1)
    def worker_env():
        return os.environ.get("AWS_ENDPOINT_URL"), ray.get_runtime_context().get_node_id()

    out["worker_env"] = ray.get([worker_env.remote() for _ in range(4)])
    out["head_node"] = cluster.head_node.node_id

    try:  # a local folder on a multi-node cluster: refused, nothing written
        Run(job, Store(local_dir)).run(progress=False)
        out["local_refused"] = ""
    except StoreError as exc:
        out["local_refused"] = str(exc)

    from raysweep.data import DatasetMissing

    try:  # the dataset is looked for on a worker node (the head has 0 CPUs: no task can run there)
        missing = parse_job({**raw, "name": "nodata", "data": {"name": "mnist", "root": "/nonexistent/data"}})
        Run(missing, Store(f"s3://{bucket}/other")).run(progress=False)
        out["data_error"] = ""
    except DatasetMissing as exc:
        out["data_error"] = str(exc)
finally:
    with open(report_file, "w") as f:
        json.dump(out, f)
    ray.shutdown()
    cluster.shutdown()
