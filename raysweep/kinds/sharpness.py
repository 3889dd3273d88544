"""Sharpness along a line — an option every line kind carries (`sharpness = {alphas = [...], at_peak = true,
...}`), written once: λ_max and tr(H) of the loss at chosen α of each pair (and at each curve's barrier peak
once its line is stored), and with top_k / density / along the Hessian beyond λ_max (PyHessian). Items of their
own (`SharpnessItem`, points/sharpness/), evaluated by evaluate/sharpness.py, rows in the `sharpness` table,
drawn as the H-spectrum figure."""
from __future__ import annotations

from raysweep.analysis.metrics import barrier_peak
from raysweep.io import paths
from raysweep.io.schemas import POINT_SCHEMA
from raysweep.kinds.base import Context
from raysweep.spec import SweepSpec, sharpness_hash
from raysweep.work.items import SharpnessItem, sharpness_key
from raysweep.work.kinds import register_item, sharpness_folder


def sharpness_items(ctx: Context, sweep: SweepSpec, sweep_pairs: list) -> list[SharpnessItem]:
    """One item per pair: the sharpness settings' α, and with at_peak the curve's barrier peak once the pair's
    line is stored on the whole grid (until then the item waits: `raysweep run` plans again)."""
    spec, split = sweep.sharpness, sweep.splits[0]
    peaks = stored_peaks(ctx, sweep, split) if spec.at_peak else {}
    folder = sharpness_folder(ctx.run, sweep)
    out = []
    for a, b in sweep_pairs:
        alphas, flags = list(spec.alphas), [False] * len(spec.alphas)
        peak = peaks.get((a.replicate, a.step, b.replicate, b.step))
        if spec.at_peak and peak is None:  # the line is not stored yet: one item, once the peak is known
            continue
        if spec.at_peak:  # the peak marked, added if it is not among the α already
            flags = [f or x == peak for x, f in zip(alphas, flags)]
            if peak not in alphas:
                alphas, flags = alphas + [peak], flags + [True]
        if alphas:
            key = sharpness_key(a, b, alphas)
            out.append(SharpnessItem(sweep.name, sweep.kind, sharpness_hash(sweep), key, paths.point_file(folder, key),
                                     a, b, tuple(alphas), tuple(flags), split, spec.iterations, spec.probes,
                                     spec.examples, sweep.align, spec, sweep.bn_batches))
    return out


def stored_peaks(ctx: Context, sweep: SweepSpec, split: str) -> dict:
    """(replicate_a, step_a, replicate_b, step_b) -> the barrier peak α of each curve stored on the whole grid."""
    import polars as pl

    from raysweep.analysis.scan import scan, sweep_files

    grid = len(sweep.alpha.points())
    df = scan(ctx.store, sweep_files(ctx.store, ctx.job, sweep), POINT_SCHEMA).filter(pl.col("split") == split).select(
        "replicate_a", "step_a", "replicate_b", "step_b", "alpha", "loss").collect()
    out = {}
    for key, part in df.group_by(["replicate_a", "step_a", "replicate_b", "step_b"]):
        part = part.unique("alpha").sort("alpha")
        if part.height >= grid:
            out[tuple(int(k) for k in key)] = barrier_peak(part["alpha"].to_numpy(), part["loss"].to_numpy())
    return out


def evaluate(evaluator, job, item: SharpnessItem):
    from raysweep.evaluate.sharpness import sharpness_item  # torch

    return sharpness_item(evaluator, job, item)


def spectrum_figures(job, sweep, t: dict) -> list:
    """The Hessian beyond λ_max at the sweep's sharpness points: density, top-k, loss along eigenvectors."""
    import polars as pl

    from raysweep.report.figures import Figure
    from raysweep.report.spectrum import spectrum_charts, spectrum_top

    sharp = t.get("sharpness")
    if sharp is None or "eigenvalues" not in sharp.columns or not sweep.sharpness.spectrum:
        return []
    part = sharp.filter(pl.col("sweep") == sweep.name, pl.col("eigenvalues").is_not_null())
    if part.is_empty():
        return []
    s = sweep.sharpness
    return [Figure(f"H-spectrum-{sweep.name}", f"Hessian spectrum (PyHessian) — {sweep.name}",
                   f"The Hessian of the mean loss over {part['examples'][0]:,} examples of {part['split'][0]} at the "
                   f"sweep's sharpness points, averaged over "
                   f"{part.select('replicate_a', 'step_a', 'replicate_b', 'step_b').n_unique()} pair(s). Top-{s.top_k} "
                   f"eigenvalues by Lanczos ({spectrum_top(part)}); the density by stochastic Lanczos quadrature over "
                   f"{s.density} probes; the loss along the top eigenvector(s) at offsets up to ±{s.radius:g}.",
                   spectrum_charts(part))]


register_item(SharpnessItem, evaluate)
