"""cluster.yaml is valid for `ray up`: checked against Ray's own autoscaler schema."""
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).parent.parent / "cluster.yaml"


def test_cluster_yaml_passes_rays_schema():
    config = yaml.safe_load(CLUSTER.read_text())
    validate_config(prepare_config(config))
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["resources"]["GPU"] >= 1  # autoscaling GPU workers
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}  # a CPU head that runs no work
    setup = "\n".join(config["setup_commands"])
    assert "torch==2.14.1 torchvision==0.29.1" in setup
    # raysweep from the checkout `ray up` ships to every node, not from a placeholder URL
    assert config["file_mounts"] == {"/home/ubuntu/raysweep": "."}
    assert (
        "-e /home/ubuntu/raysweep" in setup
        and "-c /home/ubuntu/raysweep/constraints.txt" in setup
        and "YOUR-ORG" not in CLUSTER.read_text()
    )
    assert "boto3" in "\n".join(config["head_setup_commands"])  # the AWS autoscaler needs it on the head
    head_start = "\n".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--autoscaling-config" in head_start
    # ray job submit needs the job server: ray[default] is what the package installs on every node
    pyproject = (CLUSTER.parent / "pyproject.toml").read_text()
    assert '"ray[data,tune,default]==2.60.0"' in pyproject
    assert "iam:PassRole" in CLUSTER.read_text() and "ec2:RunInstances" in CLUSTER.read_text()


def test_schema_check_is_real():
    config = yaml.safe_load(CLUSTER.read_text())
    config["available_node_types"]["gpu_worker"]["bogus_field"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))
