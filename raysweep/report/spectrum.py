"""The Hessian's figures (PyHessian's): the eigenvalue spectral density (SLQ's nodes broadened by a
Gaussian, on a log axis, as Yao et al. and Ghorbani et al. draw it) with the top-k eigenvalues, and the
loss along the top eigenvector and on the plane of the top two, at each α of a line sweep's sharpness."""
from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from raysweep.report.charts import HEIGHT, WIDTH


def density(nodes: list[float], weights: list[float], grid: np.ndarray, sigma: float) -> np.ndarray:
    """Σ_j w_j·N(λ; θ_j, σ²) on `grid`: SLQ's quadrature made a smooth density (PyHessian's density_generate)."""
    t, w = np.asarray(nodes)[:, None], np.asarray(weights)[:, None]
    return (w * np.exp(-((grid[None, :] - t) ** 2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))).sum(0)


def density_frame(rows: pl.DataFrame, points: int = 400) -> pl.DataFrame:
    """The broadened density per α (mean over the pairs' densities), on one grid over every node, σ 1% of
    the range, floored at 1e-8 for the log axis."""
    nodes = [x for xs in rows["density_nodes"] for x in xs]
    lo, hi = min(nodes), max(nodes)
    pad = 0.05 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, points)
    sigma = 0.01 * (hi - lo or 1.0)
    out = []
    for (alpha,), part in rows.group_by(["alpha"], maintain_order=True):
        dens = np.mean([density(n, w, grid, sigma) for n, w in zip(part["density_nodes"], part["density_weights"])], 0)
        out.append(pl.DataFrame({"eigenvalue": grid, "density": np.maximum(dens, 1e-8), "alpha": float(alpha)}))
    return pl.concat(out)


def spectrum_charts(rows: pl.DataFrame) -> list:
    """Density (with the top-k eigenvalues as rules), loss along v1 and the plane of v1, v2: what was asked."""
    charts = []
    if rows["density_nodes"].list.len().max():
        d = density_frame(rows)
        chart = alt.Chart(d).mark_line().encode(
            x=alt.X("eigenvalue:Q"), y=alt.Y("density:Q", scale=alt.Scale(type="log"), title="density (log)"),
            color=alt.Color("alpha:O", title="α"))
        tops = rows.select("alpha", pl.col("eigenvalues").list.first().alias("λ_max")).group_by("alpha").mean()
        chart += alt.Chart(tops).mark_rule(strokeDash=[4, 3]).encode(x="λ_max:Q", color=alt.Color("alpha:O"))
        charts.append(chart.properties(title="eigenvalue density (SLQ), λ_max dashed", width=WIDTH, height=HEIGHT))
    if rows["along_loss"].list.len().max():
        line = rows.select("alpha", "along_t", "along_loss").explode("along_t", "along_loss").group_by(
            "alpha", "along_t").agg(pl.col("along_loss").mean()).sort("alpha", "along_t")
        charts.append(alt.Chart(line).mark_line(point=True).encode(
            x=alt.X("along_t:Q", title="t (unit top eigenvector v1)"), y=alt.Y("along_loss:Q", title="loss",
                                                                              scale=alt.Scale(zero=False)),
            color=alt.Color("alpha:O", title="α")).properties(title="loss along v1", width=WIDTH, height=HEIGHT))
        first = rows.row(0, named=True)  # the plane of one point: the first pair at its first α
        ts = first["along_t"]
        plane = pl.DataFrame({"s": [s for s in ts for _ in ts], "t": [t for _ in ts for t in ts],
                              "loss": first["plane_loss"]})
        step = (ts[1] - ts[0]) / 2
        plane = plane.with_columns(s0=pl.col("s") - step, s1=pl.col("s") + step, t0=pl.col("t") - step,
                                   t1=pl.col("t") + step)
        charts.append(alt.Chart(plane).mark_rect().encode(
            x=alt.X("s0:Q", title="s (v1)"), x2="s1:Q", y=alt.Y("t0:Q", title="t (v2)"), y2="t1:Q",
            color=alt.Color("loss:Q", scale=alt.Scale(scheme="viridis")), tooltip=["s", "t", "loss"]).properties(
            title=f"loss on the plane of v1, v2 (α = {first['alpha']:g})", width=WIDTH, height=WIDTH))
    return charts


def spectrum_top(rows: pl.DataFrame) -> str:
    """A caption's numbers: the mean top-k eigenvalues at each α."""
    parts = []
    for (alpha,), part in rows.group_by(["alpha"], maintain_order=True):
        k = int(part["eigenvalues"].list.len().min())
        if k:
            means = [float(np.mean([e[i] for e in part["eigenvalues"]])) for i in range(k)]
            parts.append(f"α = {alpha:g}: " + ", ".join(f"{m:.3g}" for m in means))
    return "; ".join(parts)
