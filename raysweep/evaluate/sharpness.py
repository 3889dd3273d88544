"""Sharpness at a point of a line (PyHessian's two numbers): the top eigenvalue of the loss's Hessian
over the parameters, by power iteration on Hessian-vector products, and its trace, by Hutchinson's
estimator with Rademacher probes. The loss is the mean over a whole split (in batches: each product
sums the batches' double-backward, weighted by their share), in float32 with float64 accumulation of
the Rayleigh quotients. Plain torch."""
from __future__ import annotations

import pyarrow as pa
import torch
from torch import nn

from raysweep.evaluate.hessian import (
    dot,
    hvp,
    losses_along,
    mean_loss,
    rademacher,
    spectral_density,
    top_eigenpairs,
    trainable,
)
from raysweep.evaluate.line import matched
from raysweep.evaluate.losses import cross_entropy, squared_error
from raysweep.io.schemas import PROVENANCE, SHARPNESS_SCHEMA, SPECTRUM_FIELDS


def top_eigenvalue(model: nn.Module, batches: list, loss_fn, iterations: int = 20, tol: float = 1e-4,
                   seed: int = 0) -> float:
    """λ_max by power iteration from a seeded Gaussian start, stopping when it moves by < tol (relative)."""
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g).to(p) for p in trainable(model)]
    norm = dot(v, v) ** 0.5
    v = [x / norm for x in v]
    eig = 0.0
    for i in range(iterations):
        hv = hvp(model, batches, loss_fn, v)
        new = dot(hv, v)  # the Rayleigh quotient of the unit vector v
        norm = dot(hv, hv) ** 0.5
        if norm == 0:
            return 0.0
        v = [x / norm for x in hv]
        if i and abs(new - eig) <= tol * max(abs(eig), 1e-12):
            return new
        eig = new
    return eig


def hessian_trace(model: nn.Module, batches: list, loss_fn, probes: int = 20, seed: int = 0) -> float:
    """tr(H) ≈ mean over Rademacher probes z of zᵀHz (Hutchinson)."""
    zs = rademacher(trainable(model), probes, seed)
    return sum(dot(hvp(model, batches, loss_fn, z), z) for z in zs) / probes


def sharpness_item(evaluator, job, item) -> pa.Table:
    """λ_max, tr(H) and the loss at each α of a SharpnessItem, on the first `examples` of its split: θ(α)
    set in the evaluator's model (BatchNorm in eval mode, with the interpolated statistics)."""
    a, b = item.a, item.b
    ta = evaluator.endpoint(a.path, a.sha256)
    tb, _ = matched(evaluator, item, ta, evaluator.endpoint(b.path, b.sha256))
    x, y = evaluator.split(item.split)
    n = len(y) if not item.examples else min(item.examples, len(y))
    size = evaluator.batch_size
    batches = [(evaluator.prepare(x[i:min(i + size, n)]).float(), y[i:min(i + size, n)]) for i in range(0, n, size)]
    per_example = evaluator.loss or (cross_entropy if not y.is_floating_point() else squared_error)
    model = evaluator.model.eval()
    rows = []
    for alpha, peak in zip(item.alphas, item.at_peak):
        evaluator.set_alpha(ta, tb, alpha)
        with torch.enable_grad():
            extra = spectrum(model, batches, per_example, item.spec) if item.spec.spectrum else {}
            # λ_max: Lanczos's top eigenvalue where the spectrum is computed anyway, else power iteration
            lam = extra["eigenvalues"][0] if extra else top_eigenvalue(model, batches, per_example, item.iterations)
            trace = hessian_trace(model, batches, per_example, item.probes)
        loss = mean_loss(model, batches, per_example)
        rows.append({**extra, "job": job.name, "hash": job.hash, "sweep": item.sweep, "item": item.key,
                     "replicate_a": a.replicate, "replicate_b": b.replicate, "step_a": a.step, "step_b": b.step,
                     "alpha": float(alpha), "at_peak": bool(peak), "split": item.split, "examples": n, "loss": loss,
                     "lambda_max": lam, "trace": trace, "sha256_a": a.sha256, "sha256_b": b.sha256})
    fields = [f for f in SHARPNESS_SCHEMA if f.name not in PROVENANCE] + (SPECTRUM_FIELDS if item.spec.spectrum else [])
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def spectrum(model: nn.Module, batches: list, loss_fn, spec) -> dict:
    """The list columns beyond λ_max at the model's current weights (evaluate/hessian.py): the top-k
    eigenvalues, SLQ's density, the loss along the top eigenvectors (restored afterwards)."""
    axes = 2 if spec.along > 1 else 0
    values, vectors = top_eigenpairs(model, batches, loss_fn, max(spec.top_k, axes), spec.steps)
    nodes, weights = spectral_density(model, batches, loss_fn, spec.density, spec.steps) if spec.density else ([], [])
    ts = [spec.radius * (2 * i / (spec.along - 1) - 1) for i in range(spec.along)] if axes else []
    return {"eigenvalues": values[:spec.top_k], "density_nodes": nodes, "density_weights": weights, "along_t": ts,
            "along_loss": losses_along(model, batches, loss_fn, vectors[:1], ts) if axes else [],
            "plane_loss": losses_along(model, batches, loss_fn, vectors[:2], ts) if axes else []}
