"""Run by test_rehearse.py in a fresh interpreter: a Ray cluster on this machine (ray.cluster_utils.Cluster:
a head with 0 CPUs and worker nodes of 1 CPU and 1 simulated GPU), the store in the tests' S3 bucket, and
the rehearsals of test_rehearse.py's scenarios; writes what each ended with as JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])  # nodedata on every node

import ray  # noqa: E402
from datafiles import write_imagenet  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import raysweep  # noqa: E402
from raysweep import progress as progress_mod  # noqa: E402
from raysweep.errors import RehearsalFailed  # noqa: E402
from raysweep.run.rehearse import rehearse as rehearsal  # noqa: E402

bucket, work, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
storage = f"s3://{bucket}/runs"
results: dict = {}


def cli(*args) -> dict:
    r = subprocess.run([sys.executable, "-m", "raysweep", *args], capture_output=True, text=True, timeout=900)
    return {"code": r.returncode, "out": r.stdout, "err": r.stderr}


def rehearse(name: str, job: str, overrides=(), replicates=None, store=storage, lose_node=None):
    run = raysweep.open(job, store, list(overrides), replicates, shared_storage=True)
    original = progress_mod.SweepProgress.update
    seen = []

    def update(self, result):  # a node dies with work in flight: its raylet killed by pid
        seen.append(result)
        if lose_node is not None and len(seen) == 2:
            lose_node()
        original(self, result)
    progress_mod.SweepProgress.update = update
    try:
        results[name] = {"report": rehearsal(run, cluster.address),
                         "real_run": run.store.url(run.dir), "real_files": run.store.list(run.dir, recursive=True)}
    except RehearsalFailed as exc:
        results[name] = {"failed": str(exc)}
    finally:
        progress_mod.SweepProgress.update = original


cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
cluster.wait_for_nodes()
try:
    # the CLI, on the cluster: digits_mlp's whole plan (2 replicates)
    results["cli"] = cli("run", "digits_mlp", "--replicates", "2", "--storage", storage, "--rehearse",
                         "--address", cluster.address, "--shared-storage", "--no-progress")
    # imagenet_resnet50 (GPUs asked for: the simulated ones), on a small ImageNet-format folder, α grids CI-sized
    imagenet = write_imagenet(work / "imagenet")
    rehearse("imagenet", "imagenet_resnet50", [f"data.root={imagenet}", "resources.cpus_per_trial=1",
                                               "sweeps.init_to_final.alpha.num=3", "sweeps.step_to_final.alpha.num=3"],
             replicates=2)
    # a worker node's raylet killed while the sweep runs
    lost = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    pid = lost.all_processes["raylet"][0].process.pid

    def kill():
        os.kill(pid, 9)
        results["killed"] = {"node": lost.node_id, "pid": pid}
    rehearse("lost_node", "digits_mlp", ["sweeps.step_to_final.alpha.num=40"], replicates=2, lose_node=kill)
    try:  # the dead node out of the Cluster's own list (its raylet is gone already)
        cluster.remove_node(lost, allow_graceful=False)
    except Exception:
        pass
    # a bucket that does not exist
    rehearse("no_bucket", "digits_mlp", store=f"s3://{bucket}-missing/runs")
    # a node without the dataset
    cluster.add_node(num_cpus=1, env_vars={"RAYSWEEP_TEST_NO_DATA": "1"})
    cluster.wait_for_nodes()
    job_file = work / "nodedata.toml"
    job_file.write_text('name = "nodedata"\nreplicates = 2\n[data]\nname = "nodedata:load"\n[model]\nhidden = [4]\n'
                        '[train]\nepochs = 1\nbatch_size = 16\n[[sweeps]]\nname = "i1"\nalpha = { num = 3 }\n')
    rehearse("no_data", str(job_file))
    results["nodes"] = [n["NodeID"] for n in ray.nodes()]
finally:
    out.write_text(json.dumps(results, default=str))
    ray.shutdown()
    cluster.shutdown()
