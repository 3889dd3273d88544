"""k8s/rayjob.yaml (a KubeRay RayJob for the headline) parses, its entrypoint is a raysweep run command that
`raysweep show` accepts with the same arguments, and its pods hold what the job asks for. (No Kubernetes
cluster runs here: the README says so.)"""
import shlex
from pathlib import Path

import ray
import yaml
from typer.testing import CliRunner

from raysweep.api import open as open_run
from raysweep.cli import app

ROOT = Path(__file__).parent.parent
MANIFEST = yaml.safe_load((ROOT / "k8s" / "rayjob.yaml").read_text())


def _run_args() -> list[str]:
    argv = shlex.split(MANIFEST["spec"]["entrypoint"])
    assert argv[:2] == ["raysweep", "run"]
    return argv[2:]


def _pod(group: dict) -> dict:
    (container,) = group["template"]["spec"]["containers"]
    return container


def _option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]


def test_the_manifest_is_a_rayjob_that_cleans_up_and_autoscales_from_zero():
    spec = MANIFEST["spec"]
    assert (MANIFEST["apiVersion"], MANIFEST["kind"]) == ("ray.io/v1", "RayJob")
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__ and cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # a head that runs no work
    images = {_pod(g)["image"] for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]}
    assert len(images) == 1  # one image: the driver and the workers run the same code
    for group in cluster["workerGroupSpecs"]:
        assert group["replicas"] == group["minReplicas"] == 0 < group["maxReplicas"]
        res = _pod(group)["resources"]
        assert res["limits"] == res["requests"]
    dockerfile = (ROOT / "k8s" / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}-" in dockerfile  # Ray's image of the pinned Ray
    assert "torch==2.14.1 torchvision==0.29.1" in dockerfile and "constraints.txt" in dockerfile


def test_the_entrypoint_passes_raysweep_show_with_the_same_arguments(s3_bucket):
    argv = _run_args()
    (storage,) = _option(argv, "--storage")
    assert storage.startswith("s3://")  # pods' disks go with the pods: the store is a bucket
    bucket = storage[len("s3://"):].split("/")[0]
    name, client = s3_bucket
    client.create_bucket(Bucket=bucket)
    r = CliRunner().invoke(app, ["show", *argv])
    assert r.exit_code == 0, r.output
    assert "imagenet_resnet50" in r.output and "plan:" in r.output and "3 replicates" in r.output


def test_the_pods_hold_what_the_job_asks_for():
    argv = _run_args()
    job = open_run(argv[0], "s3://unused/x", _option(argv, "--set"), int(_option(argv, "--replicates")[0])).job
    groups = {g["groupName"]: _pod(g)["resources"]["limits"] for g in MANIFEST["spec"]["rayClusterSpec"]
              ["workerGroupSpecs"]}
    max_pods = {g["groupName"]: g["maxReplicas"] for g in MANIFEST["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    gpu = groups["gpu"]
    res = job.resources
    assert job.resources.accelerator == "gpu" and res.gpus_per_trial == 8 and res.workers == 8
    assert int(gpu["nvidia.com/gpu"]) >= res.gpus_per_trial  # a data-parallel replicate on one pod
    assert int(gpu["cpu"]) >= res.workers * res.cpus_per_trial  # ... with its ranks' CPUs
    assert max_pods["gpu"] * int(gpu["nvidia.com/gpu"]) >= job.replicates * res.gpus_per_trial  # all at once
    assert "nvidia.com/gpu" not in groups["cpu"]  # decoding pods take no GPU
    assert job.data.source == "store"  # streamed from the bucket: no dataset on any pod's disk
