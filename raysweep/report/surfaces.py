"""Planes (the surface table: T3/T4/T5) and lines in the files other tools read.

- HDF5 in tomgoldstein/loss-landscape's layout: `xcoordinates` (and `ycoordinates` for a plane),
  `<split>_loss` and `<split>_acc` (accuracy in percent). A plane's arrays have one row per y and one
  column per x — shape (len(y), len(x)) — as its readers take them (`plot_2D.py` contours
  `meshgrid(x, y)` against the array; `h52vtp.py` likewise); a line's arrays are 1-D over x.
  Missing points are NaN.
- VTK for ParaView and any VTK reader: an XML StructuredGrid (`.vts`, binary-encoded, so NaN is a
  value like any other) with the fields as point data on a z = 0 plane and the points never evaluated
  blanked (`vtkGhostType` = HIDDENPOINT), so they are left out of contours and colour maps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from raysweep.errors import SpecError


def _one_sweep(frame: pl.DataFrame, sweep: str | None, table: str, family: str, missing: str):
    """(sweep, its rows): the sweep asked for, or the table's only one."""
    names = frame["sweep"].unique(maintain_order=True).to_list() if "sweep" in frame.columns else []
    if sweep is None and len(names) != 1:
        raise SpecError(f"the {table} table holds {len(names)} {family} sweeps ({names}); name one with --sweep")
    sweep = sweep or names[0]
    rows = frame.filter(pl.col("sweep") == sweep)
    if rows.is_empty():
        raise SpecError(f"no {missing} for sweep {sweep!r}; {family} sweeps stored: {names}")
    return sweep, rows


def _fields(part: pl.DataFrame, splits: list[str], shape: tuple, index) -> dict:
    """`<split>_loss` and `<split>_acc` (accuracy in percent, as loss-landscape keeps it) of every split:
    arrays of `shape`, NaN where no point is stored, `index(rows)` placing each row."""
    out = {}
    for split in splits:
        rows = part.filter(pl.col("split") == split)
        at = index(rows)
        for col, name in (("loss", "loss"), ("error", "acc")):
            arr = np.full(shape, np.nan)
            values = rows[col].to_numpy()
            arr[at] = values if col == "loss" else 100.0 * (1.0 - values)
            out[f"{split}_{name}"] = arr
    return out


def grids(surface: pl.DataFrame, sweep: str | None) -> tuple[str, int, dict]:
    """(sweep, replicate, {name: array}) of one plane: the sweep asked for (or the only one), its lowest replicate."""
    sweep, grid = _one_sweep(surface.filter(pl.col("kind") == "grid"), sweep, "surface", "plane", "surface rows")
    k = int(grid["replicate"].min())
    grid = grid.filter(pl.col("replicate") == k)
    xs, ys = np.unique(grid["a"].to_numpy()), np.unique(grid["b"].to_numpy())
    # rows = y: loss-landscape's readers index [y, x]
    fields = _fields(
        grid,
        grid["split"].unique(maintain_order=True).to_list(),
        (len(ys), len(xs)),
        lambda rows: (np.searchsorted(ys, rows["b"].to_numpy()), np.searchsorted(xs, rows["a"].to_numpy())),
    )
    return sweep, k, {"xcoordinates": xs, "ycoordinates": ys, **fields}


def write_hdf5(path: Path, data: dict, attrs: dict) -> None:
    """`data`'s arrays as datasets (a name with '/' goes into its group); h5py comes with raysweep[interop]."""
    try:
        import h5py
    except ImportError:
        raise SpecError("--format hdf5 needs h5py, which raysweep installs with its interop extra: "
                        "pip install 'raysweep[interop]' (or pip install h5py)") from None

    with h5py.File(path, "w") as f:
        for name, arr in data.items():
            f.create_dataset(name, data=arr)
        f.attrs.update(attrs)


def line_grids(points: pl.DataFrame, sweep: str | None) -> tuple[str, dict, dict]:
    """(sweep, the line's endpoints, {name: array}) of one line of a line sweep for loss-landscape's
    `plot_1D.py`: the sweep asked for (or the only one), its first line (lowest replicates and steps)."""
    sweep, part = _one_sweep(points, sweep, "points", "line", "points stored")
    keys = ["replicate_a", "replicate_b", "step_a", "step_b"]
    first = part.select(keys).unique().sort(keys).row(0, named=True)
    part = part.filter(*[pl.col(k) == v for k, v in first.items()])
    xs = np.unique(part["alpha"].to_numpy())
    fields = _fields(part, sorted(part["split"].unique().to_list()), (len(xs),),
                     lambda rows: np.searchsorted(xs, rows["alpha"].to_numpy()))
    return sweep, first, {"xcoordinates": xs, **fields}


def curve_grids(curves: pl.DataFrame, points: pl.DataFrame, sweep: str | None) -> tuple[str, dict, int]:
    """(sweep, {dataset path: array}, groups) of a line sweep's mean ± std curves for HDF5: per step pair (one
    group `step_<a>_<b>/` each, or the file's top level when the sweep has one, where loss-landscape's
    `plot_1D.py` reads it) `xcoordinates`, `<split>_loss` / `<split>_acc` (the means), `<split>_loss_std` /
    `<split>_acc_std` and `n` (curves averaged); and every replicate's (or pair's) own line under
    `lines/<a>__<b>/` with the same names."""
    sweep, part = _one_sweep(curves, sweep, "curves", "line", "curves")
    pts = points.filter(pl.col("sweep") == sweep)
    groups = part.select("step_a", "step_b").unique().sort("step_a", "step_b").rows()
    out: dict = {}
    for step_a, step_b in groups:
        prefix = "" if len(groups) == 1 else f"step_{step_a}_{step_b}/"
        c = part.filter(pl.col("step_a") == step_a, pl.col("step_b") == step_b)
        xs = np.unique(c["alpha"].to_numpy())
        out[f"{prefix}xcoordinates"] = xs
        for split in sorted(c["split"].unique().to_list()):
            rows = c.filter(pl.col("split") == split)
            at = np.searchsorted(xs, rows["alpha"].to_numpy())
            for col, name, scale in (("loss", "loss", None), ("error", "acc", 100.0)):
                for stat in ("mean", "std"):
                    arr = np.full(len(xs), np.nan)
                    v = rows[f"{col}_{stat}"].fill_null(float("nan")).to_numpy()
                    arr[at] = v if scale is None else (scale * (1 - v) if stat == "mean" else scale * v)
                    out[f"{prefix}{split}_{name}{'' if stat == 'mean' else '_std'}"] = arr
            n = np.zeros(len(xs), dtype=np.int64)
            n[at] = rows["n"].to_numpy()
            out[f"{prefix}{split}_n"] = n
        lines = pts.filter(pl.col("step_a") == step_a, pl.col("step_b") == step_b)
        keys = ["replicate_a", "step_a", "replicate_b", "step_b"]
        for ra, sa, rb, sb in lines.select(keys).unique().sort(keys).rows():
            one = lines.filter(pl.col("replicate_a") == ra, pl.col("replicate_b") == rb)
            lx = np.unique(one["alpha"].to_numpy())
            where = f"{prefix}lines/r{ra}-s{sa}__r{rb}-s{sb}/"
            out[f"{where}xcoordinates"] = lx
            fields = _fields(one, sorted(one["split"].unique().to_list()), (len(lx),),
                             lambda rows: np.searchsorted(lx, rows["alpha"].to_numpy()))
            out.update({f"{where}{k}": v for k, v in fields.items()})
    return sweep, out, len(groups)


GHOST_HIDDEN_POINT = 2  # vtkDataSetAttributes::HIDDENPOINT: a blanked point


def write_vtk(path: Path, data: dict, title: str) -> None:
    """An XML StructuredGrid (.vts): x fastest, then y, on z = 0; every 2-D field as point data, the
    points with no value blanked through vtkGhostType. Data arrays are binary (base64), little-endian."""
    import base64
    from xml.sax.saxutils import quoteattr

    xs, ys = data["xcoordinates"], data["ycoordinates"]
    nx, ny = len(xs), len(ys)
    gx, gy = np.meshgrid(xs, ys)  # [y, x]: ravelled, x runs fastest as VTK's structured order wants
    points = np.stack([gx.ravel(), gy.ravel(), np.zeros(nx * ny)], axis=1)
    fields = {name: arr for name, arr in data.items() if arr.ndim == 2}
    missing = np.any([np.isnan(a) for a in fields.values()], axis=0).ravel() if fields else np.zeros(nx * ny, bool)

    def array(name: str, values: np.ndarray, vtk_type: str, components: int = 1) -> str:
        raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
        blob = base64.b64encode(np.uint32(len(raw)).astype("<u4").tobytes() + raw).decode()
        return (f'<DataArray type="{vtk_type}" Name={quoteattr(name)} NumberOfComponents="{components}" '
                f'format="binary">{blob}</DataArray>')

    cells = [array(name, arr.ravel().astype(np.float64), "Float64") for name, arr in fields.items()]
    cells.append(array("vtkGhostType", np.where(missing, GHOST_HIDDEN_POINT, 0).astype(np.uint8), "UInt8"))
    extent = f"0 {nx - 1} 0 {ny - 1} 0 0"
    text = "\n".join([
        '<?xml version="1.0"?>', f"<!-- {title.replace('--', '- -')} -->",
        '<VTKFile type="StructuredGrid" version="1.0" byte_order="LittleEndian" header_type="UInt32">',
        f'<StructuredGrid WholeExtent="{extent}">', f'<Piece Extent="{extent}">',
        f'<PointData Scalars={quoteattr(next(iter(fields), "vtkGhostType"))}>', *cells, "</PointData>",
        "<Points>", array("Points", points.astype(np.float64), "Float64", 3), "</Points>",
        "</Piece>", "</StructuredGrid>", "</VTKFile>", ""])
    path.write_text(text)
