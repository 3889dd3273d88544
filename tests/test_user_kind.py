"""A sweep kind written outside raysweep (tests/userkinds/cka.py: CKA along α, one file, nothing edited inside
raysweep/) named in a job's plugins and run the way a user runs it — `raysweep run` in a subprocess, on a local Ray
with 2 actors: it plans, runs on the actors (which import it), stores each item once, resumes, aggregates into its
own table, and draws its figure in the report; `raysweep results --table cka` reads it. Its numbers equal a plain
computation here. docs/development.md's "add an analysis" shows that very file."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

HERE = Path(__file__).parent
JOB = """name = "withcka"
replicates = 2
plugins = ["userkinds.cka", "userkinds.extras"]
[data]
name = "digits"
[model]
name = "tinynet"
hidden = [32]
[train]
epochs = 3
batch_size = 64
checkpoints = "list"
steps = [0, 20]
[[sweeps]]
name = "i1"
kind = "init_to_final"
alpha = { num = 5 }
metrics = ["margin"]
[[sweeps]]
name = "cka"
kind = "cka"
alpha = { start = 0.0, stop = 1.0, num = 6 }
options = { examples = 120 }
"""


def _cli(here: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "raysweep", *args], capture_output=True, text=True, timeout=600,
                          cwd=here, env=env)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    here = tmp_path_factory.mktemp("user")
    shutil.copytree(HERE / "userkinds", here / "userkinds")  # the user's own package, beside the job
    (here / "job.toml").write_text(JOB)
    first = _cli(here, "run", "job.toml", "--storage", "s", "--no-progress", "--set", "resources.eval_actors=2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = _cli(here, "run", "job.toml", "--storage", "s", "--no-progress")
    assert second.returncode == 0, second.stderr[-3000:]
    return here, first.stdout, second.stdout


def test_a_plugin_kind_runs_resumes_and_is_reported(ran):
    here, first, second = ran
    assert re.search(r"evaluated (\d+) of \1 work items", first)  # 2 replicates × (2 line items + 2 cka items)
    assert re.search(r"trained 0 replicate\(s\), evaluated 0 of \d+ work items", second)  # resumed: nothing to do
    r = _cli(here, "results", "job.toml", "--storage", "s", "--table", "cka", "--format", "csv")
    assert r.returncode == 0, r.stderr
    table = pl.read_csv(r.stdout.encode())
    assert table.height == 2 * 6 and set(table["replicate"]) == {0, 1} and table["cka"].is_between(0, 1 + 1e-9).all()
    assert table.filter(pl.col("alpha") == 1.0)["cka"].to_list() == pytest.approx([1.0, 1.0])  # θ_T with itself
    report = next((here / "s").rglob("report.html")).read_text()
    assert "CKA along θ_0 → θ_T: cka" in report
    r = _cli(here, "figures", "job.toml", "--storage", "s", "--out", "figs", "--format", "svg")
    assert r.returncode == 0 and (here / "figs" / "CKA-cka.svg").exists(), r.stderr
    r = _cli(here, "results", "job.toml", "--storage", "s", "--table", "nope")
    assert r.returncode == 2 and "cka" in r.stderr  # the tables named include the plugin's


def test_its_numbers_equal_a_plain_computation(ran):
    """CKA at α = 0 for replicate 0, computed here from the stored checkpoints with a plain forward pass."""
    sys.path.insert(0, str(HERE))
    from userkinds.cka import linear_cka

    import raysweep
    from raysweep.data.registry import load_splits

    here, _, _ = ran
    os.chdir(here)  # the job names its plugin by import name, found from the folder that holds it
    run = raysweep.open("job.toml", storage="s")
    ck = run.checkpoints.collect().filter(pl.col("replicate") == 0).sort("step")
    from safetensors.torch import load

    first, last = (load(run.store.read_bytes(p)) for p in (ck["path"][0], ck["path"][-1]))
    data = load_splits(run.job.data)
    x = data.prepare(data.test_x[:120], dtype=None, channels_last=False).float()
    from raysweep.models import build_model

    model = build_model(run.job.model, data.in_shape, data.num_classes).eval()
    feats = []
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    last_linear.register_forward_hook(lambda m, i, o: feats.append(i[0].double()))
    with torch.no_grad():
        for state in (last, first):
            model.load_state_dict(state)
            model(x)
    want = linear_cka(feats[1], feats[0])
    got = run.table("cka").filter(pl.col("replicate") == 0, pl.col("alpha") == 0.0)["cka"][0]
    assert got == pytest.approx(want, rel=1e-9)
    assert 0 < got < 1 and not np.isclose(got, 1.0)


def test_a_plugins_model_metric_and_format_are_used_by_name(ran, tmp_path):
    """The run trained `tinynet` (in Tune trials, which imported the plugin) and recorded `margin` (on the actors);
    an .npz checkpoint is read by the plugin's format, in `raysweep interpolate` too."""
    here, _, _ = ran
    r = _cli(here, "results", "job.toml", "--storage", "s", "--table", "points", "--format", "csv")
    points = pl.read_csv(r.stdout.encode())
    assert "margin" in points.columns and points["margin"].null_count() == 0
    ck = pl.read_csv(_cli(here, "results", "job.toml", "--storage", "s", "--table", "checkpoints", "--format",
                          "csv").stdout.encode())
    from safetensors.torch import load

    import raysweep

    os.chdir(here)
    run = raysweep.open("job.toml", storage="s")
    state = load(run.store.read_bytes(ck["path"][0]))
    assert sorted(state) == ["1.bias", "1.weight", "3.bias", "3.weight"] and state["1.weight"].shape == (32, 64)
    for i, path in enumerate(ck.filter(pl.col("replicate") == 0).sort("step")["path"].to_list()[:2]):
        np.savez(here / f"ck{i}.npz", **{k: v.numpy() for k, v in load(run.store.read_bytes(path)).items()})
    r = _cli(here, "interpolate", "--model", "tinynet", "--model-arg", "hidden=[32]", "--data", "digits", "ck0.npz",
             "ck1.npz", "--storage", "npz", "--no-progress", "--alpha", "0:1:3", "--set",
             'plugins=["userkinds.extras"]')
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test loss: barrier" in r.stdout


def test_the_docs_add_an_analysis_with_this_very_file():
    doc = (HERE.parent / "docs" / "development.md").read_text()
    assert (HERE / "userkinds" / "cka.py").read_text().strip() in doc
