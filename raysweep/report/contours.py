"""The pictures people publish of a plane (Li, Xu, Taylor, Studer & Goldstein 2018; loss-landscape's plot_2D.py):
labelled iso-loss lines, computed from the (a, b) grid by contourpy (the library matplotlib contours with),
and a 3-D surface seen from a fixed angle, projected here into polygons drawn back to front (the PNG/PDF
figures and the report; the report's 3-D view can also be turned with the mouse, report/surface3d.js)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl


def grid_array(grid: pl.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a values, b values, Z[b, a]) of a plane's grid rows; NaN where a point was never evaluated."""
    a = np.array(sorted(set(grid["a"].to_list())), dtype=np.float64)
    b = np.array(sorted(set(grid["b"].to_list())), dtype=np.float64)
    z = np.full((len(b), len(a)), np.nan)
    ia, ib = {v: i for i, v in enumerate(a)}, {v: i for i, v in enumerate(b)}
    for x, y, v in grid.select("a", "b", metric).iter_rows():
        if v is not None:
            z[ib[y], ia[x]] = v
    return a, b, z


def levels_of(z: np.ndarray, count: int = 8, log: bool = False) -> list[float]:
    """`count` levels strictly inside the grid's range: evenly spaced, or evenly in log space (loss spans decades)."""
    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    if not math.isfinite(lo) or hi <= lo:
        return []
    if log and lo > 0:
        return [float(v) for v in np.geomspace(lo, hi, count + 2)[1:-1]]
    return [float(v) for v in np.linspace(lo, hi, count + 2)[1:-1]]


def iso_lines(grid: pl.DataFrame, metric: str, count: int = 8, log: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(lines, labels): the iso-`metric` lines of the grid (level, line, order, a, b) and one label per level
    (at the middle of its longest line: a, b, text)."""
    import contourpy

    a, b, z = grid_array(grid, metric)
    if len(a) < 2 or len(b) < 2:
        return pl.DataFrame(), pl.DataFrame()
    gen = contourpy.contour_generator(x=a, y=b, z=np.ma.masked_invalid(z), line_type=contourpy.LineType.Separate)
    rows, labels, line = [], [], 0
    for k, level in enumerate(levels_of(z, count, log)):
        pieces = [p for p in gen.lines(level) if len(p) >= 2]
        for p in pieces:
            rows += [(level, line, i, float(x), float(y)) for i, (x, y) in enumerate(p)]
            line += 1
        if pieces:  # neighbouring levels labelled at different heights of their lines, so labels do not crowd
            longest = max(pieces, key=len)
            x, y = longest[int((len(longest) - 1) * (0.3 if k % 2 else 0.7))]
            labels.append((float(x), float(y), f"{level:.3g}"))
    return (pl.DataFrame(rows, schema=["level", "line", "order", "a", "b"], orient="row"),
            pl.DataFrame(labels, schema=["a", "b", "text"], orient="row"))


def surface_polygons(grid: pl.DataFrame, metric: str, azimuth: float = -55.0, elevation: float = 30.0,
                     log: bool = False) -> pl.DataFrame:
    """The grid's cells as quadrilaterals of a 3-D surface z = metric(a, b) seen from (azimuth, elevation),
    orthographic, in screen units: x, y (up), the cell's mean value and depth, ordered back to front (the
    painter's algorithm). a and b are scaled to [-1, 1], z to [0, 1] (log10 of the value with `log`)."""
    a, b, z = grid_array(grid, metric)
    h = np.log10(np.clip(z, 1e-12, None)) if log else z
    lo, hi = np.nanmin(h), np.nanmax(h)
    hz = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    sa = (a - a.min()) / max(np.ptp(a), 1e-12) * 2 - 1
    sb = (b - b.min()) / max(np.ptp(b), 1e-12) * 2 - 1
    az, el = math.radians(azimuth), math.radians(elevation)

    def project(x, y, w):  # rotate about the vertical axis, then tilt towards the viewer
        xr, yr = x * math.cos(az) - y * math.sin(az), x * math.sin(az) + y * math.cos(az)
        return xr, w * math.cos(el) + yr * math.sin(el), yr * math.cos(el) - w * math.sin(el)
    rows = []
    for j in range(len(b) - 1):
        for i in range(len(a) - 1):
            corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            if any(np.isnan(hz[jj, ii]) for ii, jj in corners):
                continue
            pts = [project(sa[ii], sb[jj], 1.2 * hz[jj, ii]) for ii, jj in corners]
            value = float(np.mean([z[jj, ii] for ii, jj in corners]))
            depth = float(np.mean([p[2] for p in pts]))
            rows.append({"cell": len(rows), "depth": depth, "value": value,
                         "x": [p[0] for p in pts], "y": [p[1] for p in pts]})
    rows.sort(key=lambda r: -r["depth"])  # far cells first
    return pl.DataFrame([{**r, "draw": k} for k, r in enumerate(rows)]) if rows else pl.DataFrame()
