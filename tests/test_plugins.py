"""Your own model, data and checkpoints: import-path plug-ins validated in the driver and shipped to
every Ray worker, their source in the run hash, and checkpoints trained elsewhere swept with
`raysweep interpolate`."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from conftest import TINY
from typer.testing import CliRunner

from raysweep.api import Run
from raysweep.cli import app
from raysweep.errors import SpecError
from raysweep.io.store import Store
from raysweep.jobs import job_from_dict as parse_job  # parsed and its code checked, as `raysweep` loads jobs

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"
runner = CliRunner()


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A copy of the example package in a folder of its own, as a user's project; raysweep runs there."""
    shutil.copytree(EXAMPLES / "smallconv", tmp_path / "smallconv")
    shutil.copy(EXAMPLES / "smallconv.toml", tmp_path / "smallconv.toml")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [m for m in sys.modules if m == "smallconv" or m.startswith("smallconv.")]:
        del sys.modules[name]


def test_user_module_runs_on_a_two_node_cluster_through_the_runtime_env(user_dir):
    report = user_dir / "report.json"
    proc = subprocess.run([sys.executable, str(HERE / "plugin_cluster.py"), "smallconv.toml", str(user_dir / "store"),
                           str(report)], cwd=user_dir, capture_output=True, text=True, timeout=600)
    out = json.loads(report.read_text()) if report.exists() else {}
    assert proc.returncode == 0 and out, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out["failures"] == 0 and out["items"] == 2 + 1 + 2  # I1 per replicate, I5 one pair, T2 per replicate
    # the workers imported the package from Ray's copy (py_modules), the original folder was gone
    files = {f for f, _ in out["worker_files"]}
    assert files and all("runtime_resources" in f and str(user_dir) not in f for f in files), files
    (user_dir / "moved_away").rename(user_dir / "smallconv")
    run = Run(parse_job({**_raw(user_dir), "replicates": 2}), Store(str(user_dir / "store")))
    assert run.job.hash == out["hash"] and run.points.collect()["loss"].null_count() == 0
    assert run.curves.filter(pl.col("sweep") == "init_to_final").collect().height == 5


def _raw(user_dir) -> dict:
    import tomllib

    raw = tomllib.loads((user_dir / "smallconv.toml").read_text())
    raw["train"]["epochs"] = 2
    for s in raw["sweeps"]:
        if "alpha" in s:
            s["alpha"]["num"] = 5
    return raw


def test_plugin_problems_are_named(user_dir):
    (user_dir / "smallconv" / "broken.py").write_text(
        "import torch\n\ndef two(in_shape):\n    return None\n\ndef notmodule(in_shape, num_classes):\n"
        "    return 'a string'\n\nVALUE = 3\n")
    base = {**TINY, "data": {"name": "smallconv.data:load"}}
    cases = [("nopkg.nets:build", "cannot import 'nopkg.nets'"), ("smallconv.nets:missing", "has no 'missing'"),
             ("smallconv.broken:VALUE", "not a function"), ("smallconv.broken:two", "cannot be called as the contract")]
    for name, fragment in cases:
        with pytest.raises(SpecError, match=fragment):
            parse_job({**base, "model": {"name": name}})
    with pytest.raises(SpecError, match="model.kwargs is for your own code"):
        parse_job({**TINY, "model": {"kwargs": {"width": 3}}})
    job_file = user_dir / "bad.toml"
    job_file.write_text(
        'name = "bad"\n[data]\nname = "smallconv.data:load"\n[model]\nname = "smallconv.broken:notmodule"\n'
        '[[sweeps]]\nname = "i1"\n'
    )
    r = runner.invoke(app, ["run", str(job_file), "--storage", str(user_dir / "st"), "--no-progress"])
    assert r.exit_code == 2 and "returned a str, not a torch.nn.Module" in r.output
    assert not (user_dir / "st").exists()


def test_changed_user_code_is_a_new_run(user_dir):
    from raysweep import plugins

    raw = _raw(user_dir)
    before = parse_job(raw).hash
    nets = user_dir / "smallconv" / "nets.py"
    nets.write_text(nets.read_text().replace("nn.ReLU()", "nn.GELU()"))
    plugins._digest.cache_clear()  # a new process: it imports and hashes the code as it is now
    assert parse_job(raw).hash != before
    raw["model"]["kwargs"] = {"width": 8}
    assert len({parse_job(raw).hash, before}) == 2


def _plain_training(seed: int, path: Path) -> dict:
    """What a user did elsewhere: plain torch, one epoch, torch.save of the state dict."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from external_checkpoints import train
    finally:
        sys.path.remove(str(EXAMPLES))
    state = train(seed, epochs=1)
    torch.save(state, path)
    return state


def _loss_of(state: dict, alpha_state: dict | None = None) -> float:
    """Independent check: the model loaded from the state dict, evaluated by a plain loop."""
    from smallconv.data import load
    from smallconv.nets import build

    model = build((1, 8, 8), 10)
    model.load_state_dict(state)
    model.eval()
    data = load("")
    x = (data.test_x.float() / 255 - 0.30) / 0.37
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), data.test_y).item()


def test_interpolate_checkpoints_saved_with_plain_torch_save(user_dir, tmp_path):
    a, b = _plain_training(0, user_dir / "a.pt"), _plain_training(1, user_dir / "b.pt")
    store = str(tmp_path / "store")
    r = runner.invoke(app, ["interpolate", "--model", "smallconv.nets:build", "--data", "smallconv.data:load",
                            "a.pt", "b.pt", "--alpha", "0:1:5", "--storage", store, "--no-progress", "--no-report"])
    assert r.exit_code == 0, r.output
    assert "test loss: barrier" in r.output
    run = Run(parse_job({"name": "interpolate", "replicates": 1, "external": [["a.pt", "b.pt"]],
                         "model": {"name": "smallconv.nets:build"}, "data": {"name": "smallconv.data:load"},
                         "sweeps": [{"name": "line", "kind": "init_to_final", "alpha": {"num": 5}}]}), Store(store))
    curve = run.curves.filter(pl.col("sweep") == "line").sort("alpha").collect()
    assert curve["alpha"].to_list() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve["loss_mean"][0] == pytest.approx(_loss_of(a), rel=1e-5)
    assert curve["loss_mean"][-1] == pytest.approx(_loss_of(b), rel=1e-5)
    ck = run.checkpoints.collect()
    assert ck["source"].to_list() == ["a.pt", "b.pt"] and ck["step"].to_list() == [0, 1]
    # the run is opened by the id `raysweep runs` lists (and the interpolate command printed)
    run_id = f"interpolate/{run.job.hash}"
    assert run_id in r.output
    listed = runner.invoke(app, ["runs", "--storage", store])
    assert listed.exit_code == 0 and run.job.hash in listed.output
    got = runner.invoke(app, ["results", run_id, "--storage", store, "--table", "barriers", "--format", "csv"])
    assert got.exit_code == 0, got.output
    assert pl.read_csv(got.stdout.encode())["barrier_linear_mean"].to_list() == \
        run.barriers.sort("split", "metric").collect()["barrier_linear_mean"].to_list()
    got = runner.invoke(app, ["query", run_id, "select count(*) as n from curves", "--storage", store, "--format",
                              "csv"])
    assert got.exit_code == 0 and got.stdout.strip().splitlines()[-1] == "5"  # 5 α on one split
    html = tmp_path / "line.html"
    got = runner.invoke(app, ["plot", run_id, "--storage", store, "--out", str(html)])
    assert got.exit_code == 0, got.output
    page = re.sub(r"<script.*?</script>", "", html.read_text(), flags=re.S)  # the text, not the Vega bundle
    assert "θ_a → θ_b, α in [0, 1]: line" in page and "I7" not in page and "replicates" not in page
    assert "± 0.0000" not in page and "barrier of loss (max above the endpoints&#x27; line)" in page
    got = runner.invoke(app, ["results", run_id, "--set", "train.lr=0.5", "--storage", store])
    assert got.exit_code == 2 and "stored run's id" in got.output


def test_external_checkpoints_that_do_not_fit_are_named(user_dir, tmp_path):
    state = _plain_training(0, user_dir / "a.pt")
    bad = dict(state)
    bad.pop("0.weight")
    bad["extra.bias"] = torch.zeros(3)
    bad["8.weight"] = torch.zeros(10, 7)
    torch.save(bad, user_dir / "bad.pt")
    args = ["interpolate", "--model", "smallconv.nets:build", "--data", "smallconv.data:load", "a.pt", "bad.pt",
            "--storage", str(tmp_path / "s"), "--no-progress"]
    r = runner.invoke(app, args)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "missing ['0.weight']" in text and "unexpected ['extra.bias']" in text
    assert "8.weight: (10, 7) vs the model's (10, 128)" in text

    from pathlib import PurePosixPath  # any object beyond tensors means unpickling code: refused

    torch.save({"w": PurePosixPath("/etc/passwd")}, user_dir / "evil.pt")
    r = runner.invoke(app, [*args[:5], "a.pt", "evil.pt", *args[7:]])
    assert r.exit_code == 2 and "weights_only=True" in " ".join(r.output.split())


METRICS_PY = '''import torch
import torch.nn.functional as F


def smoothed_ce(out, y):
    """Cross-entropy with label smoothing 0.1, per example."""
    return F.cross_entropy(out, y, reduction="none", label_smoothing=0.1)


def brier(out, y):
    """Brier score of the softmax, per example."""
    p = out.softmax(1)
    return ((p - F.one_hot(y, p.shape[1]).float()) ** 2).sum(1)
'''


def test_loss_and_metrics_by_import_path(user_dir, tmp_path):
    """A user's loss trains and is evaluated; extra metrics become columns with curves and barriers.
    Values checked against the model loaded from the stored checkpoint and a plain computation."""
    import torch.nn.functional as F
    from conftest import run_in_process

    from raysweep.data import load_splits
    from raysweep.io.checkpoints import load_tensors
    from raysweep.models import build_model

    (user_dir / "smallconv" / "metrics.py").write_text(METRICS_PY)
    raw = {**TINY, "name": "metrics", "train": {**TINY["train"], "loss": "smallconv.metrics:smoothed_ce"},
           "sweeps": [{"name": "i1", "kind": "init_to_final", "alpha": {"num": 3},
                       "metrics": ["top5_error", "smallconv.metrics:brier"]},
                      {"name": "i5", "kind": "final_to_final", "alpha": {"num": 3}}]}
    run = run_in_process(raw, tmp_path / "s")
    points = run.points.collect()
    i1 = points.filter(pl.col("sweep") == "i1", pl.col("alpha") == 1.0, pl.col("replicate_a") == 0)
    assert i1.height == 1 and {"top5_error", "brier"} <= set(points.columns)
    assert points.filter(pl.col("sweep") == "i5")["brier"].null_count() == points.filter(pl.col("sweep") == "i5").height
    data = load_splits(run.job.data)
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    final = run.plan()[0].b  # replicate 0's θ_T, the point at α = 1
    assert final.sha256 == i1["sha256_b"][0]
    model.load_state_dict(load_tensors(run.store, final.path, final.sha256))
    model.eval()
    with torch.no_grad():
        out = model(data.test_x)
    p = out.softmax(1)
    assert i1["loss"][0] == pytest.approx(F.cross_entropy(out, data.test_y, label_smoothing=0.1).item(), rel=1e-5)
    assert i1["brier"][0] == pytest.approx(((p - F.one_hot(data.test_y, 10)) ** 2).sum(1).mean().item(), rel=1e-5)
    top5 = (out.topk(5, 1).indices != data.test_y[:, None]).all(1).double().mean().item()
    assert i1["top5_error"][0] == pytest.approx(top5, abs=1e-12)
    curves = run.curves.filter(pl.col("sweep") == "i1").collect()
    assert curves["brier_mean"].null_count() == 0 and curves["top5_error_std"].null_count() == 0
    b = run.barriers.filter(pl.col("sweep") == "i1").collect()
    assert set(b["metric"]) == {"loss", "error", "top5_error", "brier"}
    assert set(run.barriers.filter(pl.col("sweep") == "i5").collect()["metric"]) == {"loss", "error"}
    with pytest.raises(SpecError, match="neither a built-in"):
        parse_job({**raw, "train": {**raw["train"], "loss": "hinge"}})
    with pytest.raises(SpecError, match="recorded by line and curve sweeps"):
        parse_job({**raw, "sweeps": [{"name": "t2", "kind": "projection", "metrics": ["top5_error"]}]})
