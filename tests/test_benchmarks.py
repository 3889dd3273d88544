"""The benchmark commands keep working (tiny sizes, print only; no timing is asserted here)."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "benchmarks"


def run(script, *args):
    r = subprocess.run([sys.executable, str(BENCH / script), "--no-write", *args], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_evaluator_benchmark_runs_and_agrees():
    out = run("evaluator.py", "--alphas", "4", "--n", "500", "--no-compile")
    assert "| raysweep Evaluator" in out and "Largest relative loss difference" in out
    diff = float(out.split("Largest relative loss difference from the plain loop: ")[1].split(";")[0])
    assert diff <= 1e-5


def test_gpu_benchmark_runs_on_cpu():
    out = run(
        "gpu.py",
        "--images",
        "4",
        "--batch",
        "2",
        "--alphas",
        "2",
        "--steps",
        "1",
        "--parts",
        "modes,models,train,profile",
    )
    assert "| fp32 | 2 |" in out and "Evaluator (the sweep stage's code)" in out
    assert "| cifar_vgg_16 |" in out and "LeNet-300-100's full F sweep" in out
    assert "| imagenet_resnet50 |" in out and "| mnist_lenet_300_100 |" in out
    assert "profile of the Evaluator" in out and "| aten::" in out


def test_gpu_benchmark_stage_part_runs_through_ray_on_cpu():
    out = run("gpu.py", "--images", "8", "--batch", "4", "--items", "3", "--parts", "stage")
    assert "| bare Evaluator in this process | 3 |" in out and "| Ray Data, one actor | 3 |" in out


def test_aggregation_benchmark_runs():
    out = run("aggregate.py", "--layout", "rows", "--rows", "3000", "--files", "3")
    assert "3,000 rows in 3 files" in out and "| raysweep" not in out.split("input")[0]


def test_peer_benchmark_runs_and_both_curves_agree():
    out = run("peers.py", "--scale", "0.05")
    assert "| LeNet-300-100" in out and "loss-landscapes moves parameters only" in out
    diff = float(out.split("| LeNet-300-100")[1].split("|")[4].split()[0])
    assert diff <= 1e-5  # no BatchNorm: the two tools compute the same curve
    # with θ_b carrying θ_a's BN statistics, the BatchNorm net's curves agree too (NHWC, folded, batches of 64)
    diff_bn = float(out.split("| CIFAR ResNet-20")[1].split("|")[4].split()[0])
    assert diff_bn <= 1e-5


def test_the_plain_baseline_of_benchmark_3_does_the_runs_work(tmp_path):
    """benchmarks/plain_digits.py evaluates what `raysweep run digits_mlp` does: 7,803 points and 39 T2 rows."""
    r = subprocess.run([sys.executable, str(BENCH / "plain_digits.py"), str(tmp_path)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = (tmp_path / "points.csv").read_text().splitlines()
    assert sum(1 for x in rows if not x.startswith("projection")) == 7803
    assert sum(1 for x in rows if x.startswith("projection")) == 39
    assert "plain: 7803 evaluations" in r.stdout


def test_the_language_model_benchmark_runs_and_agrees():
    out = run("lm.py", "--alphas", "2")
    assert "| raysweep Evaluator" in out and "plain Hugging Face loop" in out
    diff = float(out.split("Largest relative loss difference from the plain loop: ")[1].split(";")[0])
    assert diff <= 1e-5
