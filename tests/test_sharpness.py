"""λ_max and tr(H) of the loss along a line, against the full Hessian of a small MLP (autograd)."""
import pytest
import torch
from torch.func import functional_call

from raysweep.evaluate.losses import cross_entropy
from raysweep.evaluate.sharpness import hessian_trace, rademacher, top_eigenvalue


def _mlp_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(10, 24), torch.nn.Tanh(), torch.nn.Linear(24, 5))  # 389 parameters
    x, y = torch.randn(300, 10), torch.randint(0, 5, (300,))
    return model, x, y


def _full_hessian(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()

    def loss(w):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = w[i:i + s.numel()].reshape(s)
            i += s.numel()
        return cross_entropy(functional_call(model.double(), params, (x.double(),)), y).mean()
    return torch.autograd.functional.hessian(loss, flat)


def test_top_eigenvalue_and_trace_match_the_full_hessian():
    model, x, y = _mlp_and_data()
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 300, 64)]  # unequal batches, weighted by size
    h = _full_hessian(model, x, y)
    model.float()
    eigs = torch.linalg.eigvalsh(h)
    want = float(eigs[eigs.abs().argmax()])  # power iteration finds the largest in magnitude
    got = top_eigenvalue(model, batches, cross_entropy, iterations=200, tol=1e-9)
    assert abs(got - want) <= 1e-4 * abs(want)
    # the estimator exactly: its own probes through the full Hessian give the same mean of zᵀHz
    est = hessian_trace(model, batches, cross_entropy, probes=50)
    zs = [torch.cat([t.reshape(-1) for t in z]).double() for z in rademacher(list(model.parameters()), 50)]
    assert abs(est - sum(float(z @ h @ z) for z in zs) / 50) <= 1e-4 * abs(est)
    # ... and an unbiased one: near the true trace (within its standard error at 400 probes)
    trace = float(torch.trace(h))
    assert abs(hessian_trace(model, batches, cross_entropy, probes=400) - trace) <= 0.05 * abs(trace)


def test_a_line_sweep_records_sharpness_at_its_points_and_its_peak(tmp_path):
    """Items of their own: λ_max and tr(H) at the chosen α and at each curve's barrier peak, with the same
    numbers the functions give on the interpolated model; the line's own points are untouched."""
    import copy

    import polars as pl
    from conftest import TINY, run_in_process

    from raysweep.analysis.metrics import barrier_peak
    from raysweep.data.registry import load_splits
    from raysweep.io.checkpoints import load_tensors
    from raysweep.models import build_model
    from raysweep.spec import parse_job, sweep_hash

    line = {"name": "i5", "kind": "final_to_final", "alpha": {"num": 5}}
    raw = {**copy.deepcopy(TINY), "name": "sharp", "model": {"name": "mlp", "hidden": [8]}, "sweeps": [line]}
    plain = run_in_process(raw, tmp_path / "s")
    before = plain.points.collect()
    with_sharpness = {**line, "sharpness": {"alphas": [0.5], "at_peak": True, "iterations": 50, "probes": 4,
                                            "examples": 200}}
    raw = {**raw, "sweeps": [with_sharpness]}
    assert sweep_hash(parse_job(raw).sweeps[0]) == sweep_hash(plain.job.sweeps[0])  # the line is the same sweep
    run = run_in_process(raw, tmp_path / "s")
    assert run.points.collect().equals(before)  # nothing of the line recomputed
    sharp = run.table("sharpness")
    curve = before.filter(pl.col("split") == "test").sort("alpha")
    peak = barrier_peak(curve["alpha"].to_numpy(), curve["loss"].to_numpy())
    assert sharp["alpha"].to_list() == sorted({0.5, peak}) and sharp.filter(pl.col("at_peak"))["alpha"].to_list() == [
        peak
    ]
    data = load_splits(run.job.data)
    model = build_model(run.job.model, data.in_shape, data.num_classes)
    a, b = (load_tensors(run.store, run.plan()[0].a.path), load_tensors(run.store, run.plan()[0].b.path))
    row = sharp.filter(pl.col("alpha") == 0.5).row(0, named=True)
    model.load_state_dict({n: 0.5 * a[n] + 0.5 * b[n] for n in a})
    model.eval()
    x, y = data.prepare(data.test_x[:200]), data.test_y[:200]
    batches = [(x[i:i + 128], y[i:i + 128]) for i in range(0, 200, 128)]
    assert row["lambda_max"] == pytest.approx(top_eigenvalue(model, batches, cross_entropy, 50), rel=1e-3)
    assert row["examples"] == 200 and row["trace"] == pytest.approx(
        hessian_trace(model, batches, cross_entropy, 4), rel=1e-3)
