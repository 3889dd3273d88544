"""The four paper jobs end to end on tiny data in the real formats, with the overrides a user would
use for a smoke test; the same job files with no overrides are the full-scale runs."""
import pytest
from datafiles import write_cifar10, write_imagenet, write_mnist
from typer.testing import CliRunner

import raysweep
from raysweep.cli import app

WRITERS = {"mnist_lenet_300_100": write_mnist, "cifar10_resnet20": write_cifar10,
           "cifar10_vgg16": write_cifar10, "imagenet_resnet50": write_imagenet}
SMOKE = ["--set", "train.epochs=1", "--set", "sweeps.init_to_final.alpha.num=3",
         "--set", "sweeps.step_to_final.alpha.num=3", "--replicates", "2", "--no-progress"]


@pytest.mark.parametrize("job", list(WRITERS))
def test_paper_job_smoke_run(ray_session, job, tmp_path):
    data = tmp_path / "data"
    WRITERS[job](data)
    storage = tmp_path / "results"
    # the GPU paper jobs refuse a CPU-only machine unless told to run on CPUs (a smoke test)
    args = ["run", job, "--storage", str(storage), "--set", f"data.root={data}", *SMOKE,
            "--set", "resources.accelerator=cpu"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    run = raysweep.open(job, storage=str(storage), overrides=[f"data.root={data}", "train.epochs=1",
                        "sweeps.init_to_final.alpha.num=3", "sweeps.step_to_final.alpha.num=3",
                        "resources.accelerator=cpu"], replicates=2)
    n_test = run.points.collect()["n_examples"].unique().to_list()
    assert n_test == [{"mnist_lenet_300_100": 20, "imagenet_resnet50": 6}.get(job, 16)]
    ck = run.checkpoints.collect()
    assert sorted(set(ck["step"])) == [0, 1]  # 1 epoch of a tiny split is one iteration
    # I1: 2 replicates x 3 α; I2: 2 replicates x 2 checkpoints x 3 α, all on the test split
    assert run.points.collect().height == 2 * 3 + 2 * 2 * 3
    assert run.store.exists(f"{run.dir}/report.html")


def test_full_scale_plans(tmp_path):
    r = CliRunner().invoke(app, ["show", "imagenet_resnet50", "--set", f"data.root={tmp_path}/none"])
    assert r.exit_code == 0
    assert "3 replicates x 112680 iterations" in r.output and "124 per replicate (372 in all)" in r.output
    assert "37500 full-split evaluations" in r.output and "GPU-hours" in r.output
    r = CliRunner().invoke(app, ["show", "cifar10_resnet20", "--set", f"data.root={tmp_path}/none"])
    assert "3 replicates x 62560 iterations" in r.output and "74 per replicate" in r.output
    r = CliRunner().invoke(app, ["show", "mnist_lenet_300_100", "--set", f"data.root={tmp_path}/none"])
    assert "3 replicates x 18760 iterations" in r.output and "30 per replicate" in r.output


def test_missing_dataset_stops_before_training(tmp_path):
    r = CliRunner().invoke(app, ["run", "imagenet_resnet50", "--storage", str(tmp_path / "st"),
                                 "--set", f"data.root={tmp_path}/none", "--no-progress"])
    assert r.exit_code == 2 and "ImageFolder" in " ".join(r.output.split())
    assert not (tmp_path / "st").exists()


def test_built_in_planes_evaluate_train_and_test_as_loss_landscape_does():
    """loss-landscape's plot_2D.py reads `train_loss` by default: a plane of a built-in job has it."""
    from raysweep.jobs import builtin_jobs, load_job
    from raysweep.spec import PLANE_KINDS

    planes = [(name, s) for name in builtin_jobs() for s in load_job(name).sweeps if s.kind in PLANE_KINDS]
    assert planes and all({"train", "test"} <= set(s.splits) for _, s in planes), planes
