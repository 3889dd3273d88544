"""The README's main command, as a user runs it: `raysweep run digits_mlp`, twice, then the report
opened in headless Chromium. Checks what Goodfellow et al. 2015 and Frankle 2020 found for MNIST MLPs."""
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import raysweep

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    storage = tmp_path_factory.mktemp("digits") / "results"
    cli = [sys.executable, "-m", "raysweep.cli", "run", "digits_mlp", "--storage", str(storage), "--no-progress"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    first = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    return storage, first.stdout, second.stdout


def test_first_run_does_everything_and_second_run_nothing(digits_run):
    storage, first, second = digits_run
    done = re.search(r"evaluated (\d+) of (\d+) work items \((\d+) rows\)", first)
    # 7,803 line evaluations + 39 projection rows (3 replicates x 13 checkpoints)
    assert done and done.group(1) == done.group(2) and int(done.group(3)) == 7803 + 39
    assert "trained 3 replicate(s)" in first and "report" in first
    assert "trained 0 replicate(s), evaluated 0 of 66 work items (0 rows)" in second
    run = raysweep.open("digits_mlp", storage=str(storage))
    assert run.points.collect().height == 7803  # nothing duplicated by the rerun


def test_digits_show_what_the_papers_found(digits_run):
    storage, _, _ = digits_run
    run = raysweep.open("digits_mlp", storage=str(storage))
    c = run.curves.filter(pl.col("sweep") == "init_to_final", pl.col("split") == "test").sort("alpha").collect()
    loss = c["loss_mean"].to_list()
    # I1 (G, F): the loss falls steeply from α = 0 and is flat near the optimum
    first_half, second_half = loss[0] - loss[50], loss[50] - loss[99]
    assert loss[0] > 1.5 and loss[99] < 0.2 and first_half > 5 * second_half
    b = run.barriers.collect()
    # I5 (G): two solutions are separated by a barrier
    i5 = b.filter(pl.col("sweep") == "final_to_final", pl.col("metric") == "loss").row(0, named=True)
    assert i5["barrier_linear_mean"] > 0.2 and i5["monotone_fraction"] == 0.0 and i5["n"] == i5["planned"] == 3
    # ... most of which is the order of hidden units: after weight matching it is several times lower
    aligned = b.filter(pl.col("sweep") == "final_to_final_aligned", pl.col("metric") == "loss").row(0, named=True)
    assert aligned["barrier_linear_mean"] < i5["barrier_linear_mean"] / 3
    # I6 (G): from a random point the only minimum on the line is the solution
    i6 = run.curves.filter(pl.col("sweep") == "random_to_final").sort("alpha").collect()["loss_mean"].to_list()
    assert min(i6) == i6[-1]
    # T2 (G): the line from init to solution captures most of the parameter norm
    traj = run.trajectory.collect()
    assert traj.height == 3 * 13 and traj["max_beta_over_max_norm"].max() < 1 / 3


@pytest.mark.slow  # three commands, each with a Ray of its own: the full suite's
def test_the_readmes_export_and_interpolate_lines_run_as_written(digits_run, tmp_path):
    """The README's `raysweep export` and `raysweep interpolate` lines, copied from the README as a user copies
    them (only --storage added: the test's run lives in a folder of its own)."""
    import shlex

    storage, _, _ = digits_run
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for line in readme.splitlines()
             if line.startswith(("raysweep export digits_mlp", "raysweep interpolate --model mlp"))]
    assert len(lines) == 3, lines
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    for line in lines:
        argv = shlex.split(line)[1:] + ["--storage", str(storage if "export" in line else tmp_path / "interp")]
        argv += ["--no-progress"] if argv[0] == "interpolate" else []
        done = subprocess.run([sys.executable, "-m", "raysweep", *argv], capture_output=True, text=True, timeout=600,
                              cwd=tmp_path, env=env)
        assert done.returncode == 0, f"{line}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    assert "test loss: barrier (max above the endpoints' line)" in done.stdout


def test_report_draws_in_chromium(digits_run, tmp_path):
    storage, first, _ = digits_run
    from conftest import need

    chromium = need("chromium", "chromium")
    report = next(Path(storage).rglob("report.html"))
    out = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=30000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=180)
    dom = out.stdout
    charts = dom.count('class="chart vega-embed"')
    drawn = len(re.findall(r'<g class="mark-(?:line|area|symbol)', dom))
    assert charts == report.read_text().count("class='chart'") >= 20
    assert dom.count('class="marks"') == charts  # every chart rendered an SVG
    assert drawn >= charts and "Error" not in dom.split("</svg>")[-1]
