"""REPAIR's per-unit correction (bn = "repair"): every hidden unit of θ(α) gets the endpoints' interpolated
mean and standard deviation — checked against statistics computed by a plain layer-by-layer loop — the
endpoints are left as they are, it lowers the aligned midpoint's loss of two trained MLPs without
BatchNorm, and a sweep with it exports the very point it evaluated."""
import copy

import polars as pl
import pytest
import torch
from conftest import TINY, run_in_process, write_job_toml
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.data import load_splits
from raysweep.evaluate.align import align
from raysweep.evaluate.repair import hidden_layers, repair
from raysweep.models import build_model
from raysweep.spec import DataSpec, ModelSpec

SPEC = ModelSpec(hidden=(64, 32), activation="relu")


@pytest.fixture(scope="module")
def trained():
    d = load_splits(DataSpec(name="digits"))
    nets = []
    for seed in (0, 1):
        m = build_model(SPEC, (1, 8, 8), 10, seed=seed)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        for _ in range(300):
            i = torch.randint(0, d.n_train, (64,), generator=g)
            loss = nn.functional.cross_entropy(m(d.prepare(d.train_x[i])), d.train_y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        nets.append({k: v.detach().clone() for k, v in m.state_dict().items()})
    return d, nets


def _plain_stats(model: nn.Sequential, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each hidden Linear's output mean and (population) std per unit, by running the layers one by one."""
    out, h = [], x
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for m in model:
        h = m(h)
        if isinstance(m, nn.Linear) and m is not linears[-1]:
            out.append((h.mean(0), h.std(0, unbiased=False)))
    return out


@torch.no_grad()
def test_every_hidden_unit_gets_the_interpolated_statistics(trained):
    d, (a, b) = trained
    model = build_model(SPEC, (1, 8, 8), 10).eval()
    b = align(model, a, b)
    x = d.prepare(d.train_x[:512])
    ends = []
    for state in (a, b):
        model.load_state_dict(state)
        ends.append(_plain_stats(model, x))
    for alpha in (0.0, 0.3, 0.5):
        model.load_state_dict({k: torch.lerp(a[k], b[k], alpha) for k in a})
        before = {k: v.clone() for k, v in model.state_dict().items()}
        repair(model, [d.train_x[:512]], d.prepare, *ends, alpha)  # ends: in the order of hidden_layers
        got = _plain_stats(model, x)
        for (m, s), (ma, sa), (mb, sb) in zip(got, *ends):
            assert torch.allclose(m, (1 - alpha) * ma + alpha * mb, atol=1e-4)
            assert torch.allclose(s, (1 - alpha) * sa + alpha * sb, atol=1e-4)
        if alpha == 0.0:  # an endpoint already has its own statistics: nothing moves
            assert all(torch.allclose(before[k], v, atol=1e-5) for k, v in model.state_dict().items())
    assert len(hidden_layers(model)) == 2


@torch.no_grad()
def test_repair_lowers_the_aligned_midpoint_of_two_mlps_without_batchnorm(trained):
    d, (a, b) = trained
    model = build_model(SPEC, (1, 8, 8), 10).eval()
    b = align(model, a, b)
    x, y = d.prepare(d.test_x), d.test_y
    model.load_state_dict({k: (a[k] + b[k]) / 2 for k in a})
    plain = nn.functional.cross_entropy(model(x), y).item()
    ends = []
    for state in (a, b):
        model.load_state_dict(state)
        ends.append(_plain_stats(model, d.prepare(d.train_x[:512])))
    model.load_state_dict({k: (a[k] + b[k]) / 2 for k in a})
    repair(model, [d.train_x[:512]], d.prepare, *ends, 0.5)
    repaired = nn.functional.cross_entropy(model(x), y).item()
    assert repaired < plain, (repaired, plain)


def test_a_repair_sweep_exports_the_point_it_evaluated(tmp_path):
    raw = {**copy.deepcopy(TINY), "name": "repair", "model": {"name": "mlp", "hidden": [16]},
           "sweeps": [{"name": "i5r", "kind": "final_to_final", "align": "weights", "bn": "repair", "bn_batches": 3,
                       "alpha": {"num": 5}},
                      {"name": "i5a", "kind": "final_to_final", "align": "weights", "alpha": {"num": 5}}]}
    run = run_in_process(raw, tmp_path / "s")
    points = run.points.filter(pl.col("split") == "test").collect()
    rep, ali = (points.filter(pl.col("sweep") == s).sort("alpha") for s in ("i5r", "i5a"))
    assert rep["loss"][0] == pytest.approx(ali["loss"][0], rel=1e-5)  # the endpoints are themselves
    assert rep["loss"][-1] == pytest.approx(ali["loss"][-1], rel=1e-5)
    assert rep["loss"][2] != ali["loss"][2]  # the midpoint is corrected
    out = tmp_path / "mid.safetensors"
    r = CliRunner().invoke(app, ["export", write_job_toml(tmp_path / "r.toml", raw), "--sweep", "i5r", "--pair", "0,1",
                                 "--alpha", "0.5", "--out", str(out), "--storage", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    data = load_splits(run.job.data)
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    model.load_state_dict(load_file(str(out)))
    model.eval()
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(data.prepare(data.test_x)), data.test_y).item()
    assert loss == pytest.approx(rep["loss"][2], rel=1e-4)
