"""Run by test_plugins.py in a fresh interpreter, from a folder holding a copy of the example user
package: a head (0 CPUs) + 2 worker Ray cluster (ray.cluster_utils.Cluster). After Ray starts, the
package is moved away, so trials and actors can import it only through the runtime environment."""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # the tests' helpers (run from the user's folder)
from clusters import local_cluster  # noqa: E402

from raysweep.api import Run  # noqa: E402
from raysweep.connect import init_ray  # noqa: E402
from raysweep.io.store import Store  # noqa: E402
from raysweep.jobs import load_job  # noqa: E402

job_file, storage, report_file = sys.argv[1], sys.argv[2], sys.argv[3]
overrides = ["replicates=2", "train.epochs=2", "sweeps.init_to_final.alpha.num=5", "sweeps.final_to_final.alpha.num=5"]
job = load_job(job_file, overrides)  # imports and validates the user's code here, in the driver
run_hash = job.hash  # hashes its source, as read when it was imported
cluster = local_cluster(workers=2)
out = {}
try:
    init_ray(cluster.address, job=job)  # ships the package (runtime environment py_modules)
    Path("smallconv").rename("moved_away")  # from now on no process can import it from this folder
    summary = Run(job, Store(storage), shared_storage=True).run(progress=False, report=False)
    out["items"], out["failures"] = summary.items_total, len(summary.failures)

    @ray.remote(num_cpus=1)
    def where():
        import smallconv.nets

        return smallconv.nets.__file__, ray.get_runtime_context().get_node_id()

    out["worker_files"] = ray.get([where.remote() for _ in range(4)])
    out["head"] = cluster.head_node.node_id
    out["hash"] = run_hash
finally:
    Path(report_file).write_text(json.dumps(out))
    ray.shutdown()
    cluster.shutdown()
