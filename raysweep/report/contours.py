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


class View:
    """How a plane's surface is seen: a and b scaled to [-1, 1], heights to [0, 1.2] (log10 of the value with
    `log`), rotated by `azimuth` about the vertical axis and tilted by `elevation` towards the viewer,
    orthographic: `at(a, b, value)` is the screen point (x, y up) and its depth."""

    def __init__(self, a: np.ndarray, b: np.ndarray, z: np.ndarray, azimuth: float = -55.0, elevation: float = 30.0,
                 log: bool = False):
        self.a, self.b, self.log = a, b, log
        h = self.height(z)
        self.lo, self.hi = float(np.nanmin(h)), float(np.nanmax(h))
        self.az, self.el = math.radians(azimuth), math.radians(elevation)

    def height(self, z):
        return np.log10(np.clip(z, 1e-12, None)) if self.log else np.asarray(z, dtype=np.float64)

    def unit(self, z) -> np.ndarray:
        h = self.height(z)
        return (h - self.lo) / (self.hi - self.lo) if self.hi > self.lo else np.zeros_like(h)

    def at(self, a: float, b: float, z: float | None) -> tuple[float, float, float]:
        x = (a - self.a.min()) / max(np.ptp(self.a), 1e-12) * 2 - 1
        y = (b - self.b.min()) / max(np.ptp(self.b), 1e-12) * 2 - 1
        w = 0.0 if z is None else 1.2 * float(self.unit(z))
        xr, yr = x * math.cos(self.az) - y * math.sin(self.az), x * math.sin(self.az) + y * math.cos(self.az)
        return xr, w * math.cos(self.el) + yr * math.sin(self.el), yr * math.cos(self.el) - w * math.sin(self.el)


def surface_polygons(grid: pl.DataFrame, metric: str, azimuth: float = -55.0, elevation: float = 30.0,
                     log: bool = False) -> pl.DataFrame:
    """The grid's cells as quadrilaterals of a 3-D surface z = metric(a, b) seen from (azimuth, elevation),
    orthographic, in screen units: x, y (up), the cell's mean value and depth, ordered back to front (the
    painter's algorithm). a and b are scaled to [-1, 1], z to [0, 1] (log10 of the value with `log`)."""
    a, b, z = grid_array(grid, metric)
    view = View(a, b, z, azimuth, elevation, log)
    hz = view.unit(z)

    def project(x, y, w):
        return view.at(a[x], b[y], None if w is None else z[y, x])
    rows = []
    for j in range(len(b) - 1):
        for i in range(len(a) - 1):
            corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            if any(np.isnan(hz[jj, ii]) for ii, jj in corners):
                continue
            pts = [project(ii, jj, 1) for ii, jj in corners]
            value = float(np.mean([z[jj, ii] for ii, jj in corners]))
            depth = float(np.mean([p[2] for p in pts]))
            rows.append({"cell": len(rows), "depth": depth, "value": value,
                         "x": [p[0] for p in pts], "y": [p[1] for p in pts]})
    rows.sort(key=lambda r: -r["depth"])  # far cells first
    return pl.DataFrame([{**r, "draw": k} for k, r in enumerate(rows)]) if rows else pl.DataFrame()


def surface_frame(grid: pl.DataFrame, metric: str, path: pl.DataFrame, marks: dict[str, tuple[float, float]],
                  titles: tuple[str, str], azimuth: float = -55.0, elevation: float = 30.0, log: bool = False,
                  ticks: int = 3) -> tuple[list[list[tuple[float, float]]], list[dict], list[tuple[float, float]]]:
    """What makes the surface readable, in the same screen units as `surface_polygons`: (the frame's lines —
    the base's a and b edges and a vertical axis of the metric —, labels {x, y, text, kind}: ticks and titles of
    a, b and the metric, and the marked points (θ_T, θ_0), the SGD path on the surface (screen points, from
    `path`'s a, b at the height interpolated on the grid)."""
    a, b, z = grid_array(grid, metric)
    view = View(a, b, z, azimuth, elevation, log)
    a0, a1, b0, b1 = float(a.min()), float(a.max()), float(b.min()), float(b.max())
    pt = lambda aa, bb, zz=None: view.at(aa, bb, zz)[:2]  # noqa: E731
    lo_v = float(np.nanmin(z)) if not log else 10 ** view.lo
    hi_v = float(np.nanmax(z)) if not log else 10 ** view.hi
    lines = [[pt(a0, b0), pt(a1, b0)], [pt(a1, b0), pt(a1, b1)], [pt(a0, b0), pt(a0, b0, hi_v)]]
    labels = []
    for v in np.linspace(a0, a1, ticks):
        x, y = pt(float(v), b0)
        labels.append({"x": x, "y": y - 0.07, "text": f"{v:.3g}", "kind": "tick"})
    for v in np.linspace(b0, b1, ticks):
        x, y = pt(a1, float(v))
        labels.append({"x": x + 0.1, "y": y - 0.02, "text": f"{v:.3g}", "kind": "tick"})
    for v in (np.geomspace(lo_v, hi_v, ticks) if log and lo_v > 0 else np.linspace(lo_v, hi_v, ticks)):
        x, y = pt(a0, b0, float(v))
        labels.append({"x": x - 0.06, "y": y, "text": f"{v:.3g}", "kind": "tick"})
    x, y = pt((a0 + a1) / 2, b0)
    labels.append({"x": x, "y": y - 0.2, "text": titles[0], "kind": "title"})
    x, y = pt(a1, (b0 + b1) / 2)
    labels.append({"x": x + 0.25, "y": y - 0.12, "text": titles[1], "kind": "title"})
    x, y = pt(a0, b0, hi_v)
    labels.append({"x": x, "y": y + 0.08, "text": f"{metric}{' (log)' if log else ''}", "kind": "title"})
    on_surface = _interpolate(a, b, z)
    for name, (ma, mb) in marks.items():
        if a0 <= ma <= a1 and b0 <= mb <= b1:
            x, y = pt(ma, mb, on_surface(ma, mb))
            labels.append({"x": x, "y": y, "text": name, "kind": "mark"})
    steps = path.sort("step") if path.height else path
    track = [pt(ra, rb, on_surface(ra, rb)) for ra, rb in steps.select("a", "b").iter_rows()
             if a0 <= ra <= a1 and b0 <= rb <= b1]
    return lines, labels, track


def _interpolate(a: np.ndarray, b: np.ndarray, z: np.ndarray):
    """value(a, b) on the grid, bilinear between its points (NaN cells: the nearest value)."""
    from scipy.interpolate import RegularGridInterpolator

    filled = np.where(np.isnan(z), np.nanmean(z), z)
    if len(a) < 2 or len(b) < 2:  # a line, not a plane: the nearest value
        return lambda aa, bb: float(filled[int(np.abs(b - bb).argmin()), int(np.abs(a - aa).argmin())])
    f = RegularGridInterpolator((b, a), filled, bounds_error=False, fill_value=None)
    return lambda aa, bb: float(f([[bb, aa]])[0])
