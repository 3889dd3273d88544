"""The Hessian beyond λ_max (PyHessian, Yao et al. 2020): its top-k eigenpairs by Lanczos, its eigenvalue
spectral density by stochastic Lanczos quadrature (SLQ), and the loss along the top eigenvectors; and
the product they and sharpness.py stand on: H·v of the mean loss over whole batches (double-backward).
Vectors are lists of tensors shaped like the model's parameters; inner products and the Lanczos
coefficients are float64.

Lanczos runs `steps` iterations with full reorthogonalisation against every earlier vector (m vectors
of the model's size are held: ResNet-50 at m = 30 is 3 GB in float32), so the tridiagonal T's
eigenvalues (Ritz values) are the Hessian's extreme eigenvalues to high accuracy after m ≳ 2k steps,
and T's eigenvectors' first components give the quadrature weights of the spectral density seen
from the start vector: Σ_j w_j θ_j^p = vᵀHᵖv / vᵀv exactly for p < 2m (Golub & Meurant)."""
from __future__ import annotations

import torch
from torch import nn

Vector = list[torch.Tensor]


def trainable(model: nn.Module) -> list[torch.Tensor]:
    """The parameters the Hessian is over: those that require grad."""
    return [p for p in model.parameters() if p.requires_grad]


def hvp(model: nn.Module, batches: list, loss_fn, vec: list[torch.Tensor]) -> list[torch.Tensor]:
    """H·v of the mean loss over `batches` [(x, y)], H the Hessian over the model's parameters."""
    params = trainable(model)
    n = sum(len(y) for _, y in batches)
    out = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = loss_fn(model(x), y).sum() / n
        grads = torch.autograd.grad(loss, params, create_graph=True)
        gv = sum((g * v).sum() for g, v in zip(grads, vec))
        for acc, h in zip(out, torch.autograd.grad(gv, params)):
            acc += h
    return out


def mean_loss(model: nn.Module, batches: list, loss_fn) -> float:
    """The mean loss over every example of `batches` [(x, y)] at the model's weights, in float64 (no graph)."""
    n = sum(len(y) for _, y in batches)
    with torch.no_grad():
        return sum(float(loss_fn(model(x), y).double().sum()) for x, y in batches) / n


def dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """⟨a, b⟩ in float64."""
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


def rademacher(params: list[torch.Tensor], count: int, seed: int = 0):
    """The seeded ±1 probes of hessian_trace, one list of tensors (shaped like `params`) at a time."""
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(count):
        yield [(torch.randint(0, 2, p.shape, generator=g) * 2 - 1).to(p) for p in params]


def _axpy(a: float, x: Vector, y: Vector) -> Vector:
    return [yi + a * xi for xi, yi in zip(x, y)]


def _scale(a: float, x: Vector) -> Vector:
    return [a * xi for xi in x]


def lanczos(matvec, start: Vector, steps: int) -> tuple[torch.Tensor, torch.Tensor, list[Vector]]:
    """(α, β, V): the tridiagonal T = tridiag(β, α, β) of `steps` Lanczos iterations of the symmetric
    operator `matvec` from `start`, and the orthonormal basis V (full reorthogonalisation, twice). Stops
    early when the Krylov space is exhausted (β ≈ 0): then T is exact on it."""
    norm = dot(start, start) ** 0.5
    v = _scale(1 / norm, start)
    basis, alphas, betas = [v], [], []
    for j in range(steps):
        w = matvec(v)
        a = dot(w, v)
        alphas.append(a)
        for _ in range(2):  # classical Gram-Schmidt against every vector so far, twice ("twice is enough")
            for q in basis:
                w = _axpy(-dot(w, q), q, w)
        b = dot(w, w) ** 0.5
        if j == steps - 1 or b <= 1e-10 * max(abs(a), 1.0):
            break
        betas.append(b)
        v = _scale(1 / b, w)
        basis.append(v)
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64), basis


def tridiagonal_eigh(alphas: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors (columns) of tridiag(β, α, β)."""
    t = torch.diag(alphas)
    if len(betas):
        t += torch.diag(betas, 1) + torch.diag(betas, -1)
    return torch.linalg.eigh(t)


def top_eigenpairs(model: nn.Module, batches: list, loss_fn, k: int, steps: int,
                   seed: int = 0) -> tuple[list[float], list[Vector]]:
    """The k largest eigenvalues of the Hessian of the mean loss (descending) and their unit eigenvectors
    (Ritz vectors), from `steps` Lanczos steps (at least 2k + 10, at most the parameter count) from a
    seeded Gaussian start."""
    params = trainable(model)
    size = sum(p.numel() for p in params)
    g = torch.Generator().manual_seed(seed)
    start = [torch.randn(p.shape, generator=g).to(p) for p in params]
    alphas, betas, basis = lanczos(lambda v: hvp(model, batches, loss_fn, v), start,
                                   min(size, max(steps, 2 * k + 10)))
    values, vectors = tridiagonal_eigh(alphas, betas)
    order = torch.argsort(values, descending=True)[:k]
    ritz = []
    for i in order.tolist():
        s = vectors[:, i]
        vec = [torch.zeros_like(p) for p in params]
        for coef, q in zip(s.tolist(), basis):
            vec = _axpy(coef, q, vec)
        norm = dot(vec, vec) ** 0.5
        ritz.append(_scale(1 / norm, vec))
    return [float(values[i]) for i in order], ritz


def spectral_density(model: nn.Module, batches: list, loss_fn, probes: int, steps: int,
                     seed: int = 0) -> tuple[list[float], list[float]]:
    """SLQ: for each of `probes` seeded Rademacher vectors, `steps` Lanczos steps give the nodes θ_j (Ritz
    values) and weights (first components of T's eigenvectors)²; the density is Σ over probes of
    (weight / probes)·δ(λ − θ_j), whose moments estimate tr(Hᵖ)/n. Returns (nodes, weights), probes after
    one another (weights sum to 1)."""
    params = trainable(model)
    size = sum(p.numel() for p in params)
    nodes, weights = [], []
    for z in rademacher(params, probes, seed + 7):
        alphas, betas, _ = lanczos(lambda v: hvp(model, batches, loss_fn, v), z, min(size, steps))
        values, vectors = tridiagonal_eigh(alphas, betas)
        nodes += values.tolist()
        weights += (vectors[0] ** 2 / probes).tolist()
    return nodes, weights


def losses_along(model: nn.Module, batches: list, loss_fn, directions: list[Vector], ts: list[float]) -> list[float]:
    """The mean loss at θ + t·d1 (one direction: one value per t) or θ + s·d1 + t·d2 (two: the grid, s
    slowest), the parameters restored afterwards."""
    params = trainable(model)
    saved = [p.detach().clone() for p in params]
    grid = [(s,) for s in ts] if len(directions) == 1 else [(s, t) for s in ts for t in ts]
    out = []
    with torch.no_grad():
        for coords in grid:
            for p, p0, *ds in zip(params, saved, *directions):
                p.copy_(p0)
                for c, d in zip(coords, ds):
                    p.add_(d, alpha=c)
            out.append(mean_loss(model, batches, loss_fn))
        for p, p0 in zip(params, saved):
            p.copy_(p0)
    return out
