"""`raysweep export`: θ(α) of a sweep's line as a state dict the model's builder loads."""
import copy

import polars as pl
import pytest
import torch
from conftest import TINY, run_in_process, write_job_toml
from safetensors.torch import load_file
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.data.registry import load_splits
from raysweep.io.checkpoints import load_tensors
from raysweep.io.manifests import read_manifests
from raysweep.models import build_model

RAW = {**copy.deepcopy(TINY), "name": "export", "sweeps": [s for s in TINY["sweeps"] if s["name"] in ("i1", "i5")]}


def test_an_exported_point_loads_and_gives_the_curve_s_loss(tmp_path):
    run = run_in_process(RAW, tmp_path / "s")
    job_file = write_job_toml(tmp_path / "e.toml", RAW)
    out = tmp_path / "merged.safetensors"
    r = CliRunner().invoke(app, ["export", job_file, "--sweep", "i5", "--pair", "0,1", "--alpha", "0.5", "--out",
                                 str(out), "--storage", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    state = load_file(str(out))
    finals = []
    for k in (0, 1):
        m = read_manifests(run.store, run.job, k)
        finals.append(load_tensors(run.store, m[max(m)]["path"], m[max(m)]["sha256"]))
    for name, t in state.items():  # the midpoint of the two finals, weights and BN statistics alike
        want = (
            0.5 * finals[0][name].double() + 0.5 * finals[1][name].double()
            if t.is_floating_point()
            else finals[1][name]
        )
        assert torch.allclose(t.double(), want.double(), rtol=0, atol=1e-6), name
    data = load_splits(run.job.data)
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(data.prepare(data.test_x)), data.test_y).item()
    row = run.points.filter(pl.col("sweep") == "i5", pl.col("alpha") == 0.5, pl.col("split") == "test").collect()
    assert loss == pytest.approx(row["loss"][0], rel=1e-5)
    r = CliRunner().invoke(app, ["export", job_file, "--sweep", "i5", "--pair", "1,0", "--alpha", "0.5", "--out",
                                 str(out), "--storage", str(tmp_path / "s")])
    assert r.exit_code == 2 and "no pair with these endpoints" in " ".join(r.output.split())
    # --replicates, as every other command takes it: the same run when it names the job's own count
    again = tmp_path / "again.safetensors"
    r = CliRunner().invoke(app, ["export", job_file, "--sweep", "i5", "--pair", "0,1", "--alpha", "0.5", "--out",
                                 str(again), "--storage", str(tmp_path / "s"), "--replicates", str(run.job.replicates)])
    assert r.exit_code == 0, r.output
    assert all(torch.equal(t, load_file(str(again))[name]) for name, t in state.items())


def _test_loss(job, state) -> float:
    data = load_splits(job.data)
    model = build_model(job.model, data.in_shape, data.num_classes)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(data.prepare(data.test_x)), data.test_y).item()


def test_an_exported_point_is_the_one_the_sweep_evaluated_subset_and_bn_reset_included(tmp_path):
    """A line over some tensors exports the others at θ_b's values; a bn = reset line exports the BN
    statistics re-estimated as the sweep did — both give the curve's own loss."""
    subset = {"name": "head", "kind": "final_to_final", "alpha": {"num": 3}, "params": {"exclude": ["4.*"]}}
    raw = {**copy.deepcopy(TINY), "name": "export2",
           "sweeps": [s for s in TINY["sweeps"] if s["name"] == "i6"] + [subset]}
    run = run_in_process(raw, tmp_path / "s")
    job_file = write_job_toml(tmp_path / "e.toml", raw)
    finals = []
    for k in (0, 1):
        m = read_manifests(run.store, run.job, k)
        finals.append(load_tensors(run.store, m[max(m)]["path"], m[max(m)]["sha256"]))
    for sweep, extra in (("head", ["--pair", "0,1"]), ("i6", ["--replicate", "0"])):
        out = tmp_path / f"{sweep}.safetensors"
        r = CliRunner().invoke(app, ["export", job_file, "--sweep", sweep, *extra, "--alpha", "0.5", "--out", str(out),
                                     "--storage", str(tmp_path / "s")])
        assert r.exit_code == 0, r.output
        state = load_file(str(out))
        row = run.points.filter(pl.col("sweep") == sweep, pl.col("alpha") == 0.5, pl.col("split") == "test",
                                pl.col("replicate_a") == 0).collect()
        assert row.height == 1 and _test_loss(run.job, state) == pytest.approx(row["loss"][0], rel=1e-5)
        if sweep == "head":  # the excluded tensors are θ_b's, the rest the midpoint
            moved = [n for n in state if not n.startswith("4.") and state[n].is_floating_point()]
            assert moved and all(torch.equal(state[n], finals[1][n]) for n in state if n.startswith("4."))
            assert all(torch.allclose(state[n].double(), 0.5 * finals[0][n].double() + 0.5 * finals[1][n].double(),
                                      rtol=0, atol=1e-6) for n in moved)
        else:  # the running statistics are not the interpolated ones: they were re-estimated
            stats = [n for n in state if n.endswith("running_mean")]
            assert stats and not torch.allclose(state[stats[0]], finals[0][stats[0]])
