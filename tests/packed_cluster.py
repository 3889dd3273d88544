"""Run by test_packed.py in a fresh interpreter: a 3-node Ray cluster on this machine — a head with no
CPUs, a 1-CPU "trainer" node and a 1-CPU node that only ever decodes — whose nodes do not know the S3
endpoint. Packs an ImageFolder of real JPEGs into a moto bucket, trains a conv net streaming from it,
sweeps, and reports what happened where."""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
endpoint = os.environ.pop("AWS_ENDPOINT_URL")  # the nodes start without it

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

raw, bucket, source, report_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))  # smallconv: the user's conv net
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
trainer_node = cluster.add_node(num_cpus=1, resources={"trainer": 1})
decoder_node = cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
out = {"trainer_node": trainer_node.node_id, "decoder_node": decoder_node.node_id}
try:
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    from raysweep.api import Run
    from raysweep.connect import init_ray
    from raysweep.data import packed, streams
    from raysweep.io.store import Store
    from raysweep.jobs import job_from_dict

    init_ray(cluster.address, job=job_from_dict(raw))
    store = Store(f"s3://{bucket}/sweeps")
    folder, man = packed.pack(source, "toy", store, shard_images=8)
    out["pack"] = {s: [v["count"], len(v["shards"])] for s, v in man["splits"].items()}

    @ray.remote(num_cpus=1, resources={"trainer": 1})
    def trainer_busy():  # what a training trial does to its node's CPU: while it holds it, only the other decodes
        target, m = packed.find(Store(f"s3://{bucket}/sweeps"), "toy")
        epochs = []
        for epoch in (0, 1):
            ids, nodes = [], set()
            for _, _, idx, where in streams.stream(target.address, m["splits"]["train"]["shards"], 16, 4, 0, epoch,
                                                  trace=True):
                ids += idx.tolist()
                nodes |= set(where)
            epochs.append([ids, sorted(nodes)])
        return epochs, ray.get_runtime_context().get_node_id()

    out["streamed"], out["stream_driver_node"] = ray.get(trainer_busy.remote())
    run = Run(job_from_dict(raw), store)
    summary = run.run(progress=False, report=False)
    out["failures"] = len(summary.failures)
    out["items"] = summary.items_total
    out["manifests"] = run.checkpoints.collect().select("step", "node_id", "images_per_s", "data_wait").to_dicts()
    out["curve_rows"] = run.curves.collect().height
finally:
    with open(report_file, "w") as f:
        json.dump(out, f, default=str)
    ray.shutdown()
    cluster.shutdown()
