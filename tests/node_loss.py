"""Run by test_faults.py in a fresh interpreter: a head + 2 worker Ray cluster on this machine
(ray.cluster_utils.Cluster); one worker node is removed while the sweep is in flight."""
import json
import os
import sys

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from raysweep.api import Run  # noqa: E402
from raysweep.io.store import Store  # noqa: E402
from raysweep.spec import parse_job  # noqa: E402
from raysweep.train.loop import train_replicate  # noqa: E402

raw = json.loads(sys.argv[1])
storage, report_file = sys.argv[2], sys.argv[3]
job = parse_job(raw)
store = Store(storage)
for k in range(job.replicates):
    train_replicate(job, k, store)  # no Ray needed: the sweep is what this test is about

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
cluster.wait_for_nodes()
try:
    from raysweep.connect import init_ray

    init_ray(cluster.address)
    run = Run(job, store, shared_storage=True)  # every 'node' is this machine
    seen, removed = [], []

    def on_result(result, _inner=None):
        seen.append(result)
        if len(seen) == 3:
            cluster.remove_node(workers[1], allow_graceful=False)  # the node dies with work in flight
            removed.append(len(seen))

    from raysweep import progress as progress_mod

    original = progress_mod.SweepProgress.update

    def update(self, result):
        on_result(result)
        original(self, result)

    progress_mod.SweepProgress.update = update
    summary = run.sweep(progress=True)
    with open(report_file, "w") as f:
        json.dump({"items_total": summary.items_total, "failures": len(summary.failures),
                   "removed_after": removed, "results_seen": len(seen)}, f)
finally:
    ray.shutdown()
    cluster.shutdown()
