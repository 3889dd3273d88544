"""The Hessian beyond λ_max (evaluate/hessian.py) against the full Hessian of a small MLP, built here by
autograd and diagonalised by eigvalsh; and the sharpness table and figure that carry it."""
import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_in_process
from torch import nn

from raysweep.evaluate.hessian import lanczos, losses_along, rademacher, spectral_density, top_eigenpairs, trainable
from raysweep.evaluate.losses import cross_entropy
from raysweep.evaluate.sharpness import top_eigenvalue
from raysweep.report.figures import figures, load_tables


def small_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))  # 42 + 24 = 66 parameters
    x, y = torch.randn(48, 5), torch.randint(0, 3, (48,))
    return model, [(x[:20], y[:20]), (x[20:], y[20:])], x, y


def full_hessian(model, x, y) -> torch.Tensor:
    """∂²/∂θ² of the mean cross-entropy over all examples, θ the parameters flattened, by autograd."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()

    def loss(theta):
        params, at = {}, 0
        for n, s in zip(names, shapes):
            params[n] = theta[at:at + s.numel()].reshape(s)
            at += s.numel()
        out = torch.func.functional_call(model.double(), params, (x.double(),))
        return nn.functional.cross_entropy(out, y)

    h = torch.autograd.functional.hessian(loss, flat)
    model.float()
    return h


def flat(vec) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in vec]).double()


def test_top_k_eigenvalues_and_vectors_match_the_full_hessian():
    model, batches, x, y = small_problem()
    h = full_hessian(model, x, y)
    exact = torch.linalg.eigvalsh(h).flip(0)
    values, vectors = top_eigenpairs(model, batches, cross_entropy, k=4, steps=30)  # 30 steps for 66 dimensions
    for got, want in zip(values, exact[:4].tolist()):
        assert got == pytest.approx(want, rel=1e-3)
    for lam, v in zip(values, vectors):  # each a unit eigenvector: ‖Hv − λv‖ small against λ
        u = flat(v)
        assert u.norm().item() == pytest.approx(1, abs=1e-6)
        assert (h @ u - lam * u).norm().item() < 1e-2 * abs(values[0])
    assert values[0] == pytest.approx(top_eigenvalue(model, batches, cross_entropy, iterations=500, tol=1e-9),
                                      rel=1e-3)


def test_lanczos_basis_is_orthonormal_and_exhausts_a_small_space():
    a = torch.diag(torch.tensor([3.0, 1.0, -2.0, 1.0]))  # three distinct eigenvalues: the Krylov space is 3-D
    alphas, betas, basis = lanczos(lambda v: [a @ v[0]], [torch.ones(4)], steps=10)
    assert len(alphas) == 3 and len(basis) == 3
    q = torch.stack([b[0] for b in basis]).double()
    assert torch.allclose(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-6)
    t = torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)
    assert torch.allclose(torch.linalg.eigvalsh(t), torch.tensor([-2.0, 1.0, 3.0], dtype=torch.float64), atol=1e-5)


def test_slq_quadrature_gives_each_probes_moments_and_their_mean_the_spectrums():
    model, batches, x, y = small_problem()
    h = full_hessian(model, x, y)
    n = h.shape[0]
    probes, steps = 12, 8
    nodes, weights = spectral_density(model, batches, cross_entropy, probes, steps)
    assert len(nodes) == probes * steps and sum(weights) == pytest.approx(1, abs=1e-6)
    zs = [flat(z) for z in rademacher(trainable(model), probes, 7)]  # the density's probes, by their seed
    for p in (1, 2, 3):  # Gauss quadrature with m nodes is exact for degree < 2m: per probe, zᵀHᵖz / zᵀz
        hp = torch.linalg.matrix_power(h, p)
        per_probe = [float(z @ hp @ z / (z @ z)) for z in zs]
        got = [sum(w * probes * t**p for t, w in zip(nodes[i * steps:(i + 1) * steps],
                                                    weights[i * steps:(i + 1) * steps])) for i in range(probes)]
        np.testing.assert_allclose(got, per_probe, rtol=1e-3, atol=1e-6 * abs(per_probe[0]) + 1e-9)
        exact = float(torch.trace(hp)) / n  # the spectrum's p-th moment: within the probes' standard error
        spread = np.std(per_probe) / np.sqrt(probes)
        assert abs(np.mean(got) - exact) < 4 * spread + 1e-9


def test_losses_along_eigenvectors_are_a_plain_loop_over_moved_copies():
    model, batches, x, y = small_problem()
    _, vectors = top_eigenpairs(model, batches, cross_entropy, k=2, steps=30)
    before = [p.detach().clone() for p in model.parameters()]
    ts = [-0.5, 0.0, 0.25, 0.5]
    line = losses_along(model, batches, cross_entropy, vectors[:1], ts)
    plane = losses_along(model, batches, cross_entropy, vectors[:2], ts)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # restored
    theta, d1, d2 = flat(before), flat(vectors[0]), flat(vectors[1])

    def loss_at(vec):
        copy = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
        torch.nn.utils.vector_to_parameters(vec.float(), copy.parameters())
        with torch.no_grad():
            return nn.functional.cross_entropy(copy(x), y).item()
    assert line == pytest.approx([loss_at(theta + t * d1) for t in ts], rel=1e-5)
    assert plane == pytest.approx([loss_at(theta + s * d1 + t * d2) for s in ts for t in ts], rel=1e-5)
    # along the top eigenvector the loss is a parabola of curvature λ_max near θ
    lam = top_eigenvalue(model, batches, cross_entropy, iterations=300, tol=1e-9)
    eps = 1e-2
    second = (loss_at(theta + eps * d1) - 2 * loss_at(theta) + loss_at(theta - eps * d1)) / eps**2
    assert second == pytest.approx(lam, rel=2e-2)


def test_a_sweeps_sharpness_records_the_spectrum_and_draws_it(tmp_path):
    raw = {"name": "spectrum", "replicates": 2, "model": {"name": "mlp", "hidden": [8]},
           "train": {"epochs": 1, "batch_size": 64, "checkpoints": "list", "steps": [0]},
           "sweeps": [{"name": "i1", "kind": "init_to_final", "alpha": {"num": 3},
                       "sharpness": {"alphas": [0.5, 1.0], "examples": 200, "top_k": 3, "density": 2, "steps": 12,
                                     "along": 5}}]}
    run = run_in_process(raw, tmp_path / "s")
    sharp = run.tables.get("sharpness").collect()
    assert sharp.height == 4  # two pairs (replicates) × two α
    for row in sharp.iter_rows(named=True):
        assert len(row["eigenvalues"]) == 3 and row["eigenvalues"] == sorted(row["eigenvalues"], reverse=True)
        assert row["eigenvalues"][0] == pytest.approx(row["lambda_max"], rel=2e-2)  # Lanczos vs power iteration
        assert len(row["density_nodes"]) == 24 and sum(row["density_weights"]) == pytest.approx(1, abs=1e-6)
        assert row["along_t"] == pytest.approx([-0.5, -0.25, 0.0, 0.25, 0.5])
        assert row["along_loss"][2] == pytest.approx(row["loss"], rel=1e-5) and len(row["plane_loss"]) == 25
        assert row["plane_loss"][12] == pytest.approx(row["loss"], rel=1e-5)  # the grid's centre is θ
    names = [f.name for f in figures(run.job, load_tables(run.tables))]
    assert "H-spectrum-i1" in names
    fig = next(f for f in figures(run.job, load_tables(run.tables)) if f.name == "H-spectrum-i1")
    assert len(fig.charts) == 3 and "Top-3 eigenvalues" in fig.caption
    fig.chart().to_dict()  # a valid Vega-Lite spec
    assert pl.Series(sharp["trace"]).is_finite().all()
