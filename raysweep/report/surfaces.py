"""The surface table (T3/T4/T5 planes) in the files other tools read: HDF5 in tomgoldstein/loss-landscape's
layout (`xcoordinates`, `ycoordinates`, `<split>_loss`, `<split>_acc` in percent, arrays indexed [x, y]) and
a legacy VTK structured grid for ParaView (the same fields as point data on a z = 0 plane)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from raysweep.errors import SpecError


def grids(surface: pl.DataFrame, sweep: str | None) -> tuple[str, int, dict]:
    """(sweep, replicate, {name: array}) of one plane: the sweep asked for (or the only one), its lowest replicate."""
    grid = surface.filter(pl.col("kind") == "grid")
    names = grid["sweep"].unique(maintain_order=True).to_list()
    if sweep is None and len(names) != 1:
        raise SpecError(f"the surface table holds {len(names)} plane sweeps ({names}); name one with --sweep")
    sweep = sweep or names[0]
    grid = grid.filter(pl.col("sweep") == sweep)
    if grid.is_empty():
        raise SpecError(f"no surface rows for sweep {sweep!r}; plane sweeps stored: {names}")
    k = int(grid["replicate"].min())
    grid = grid.filter(pl.col("replicate") == k)
    xs, ys = np.unique(grid["a"].to_numpy()), np.unique(grid["b"].to_numpy())
    out = {"xcoordinates": xs, "ycoordinates": ys}
    for split in grid["split"].unique(maintain_order=True).to_list():
        part = grid.filter(pl.col("split") == split)
        for col, name, scale in (("loss", "loss", 1.0), ("error", "acc", None)):
            arr = np.full((len(xs), len(ys)), np.nan)
            ia, ib = np.searchsorted(xs, part["a"].to_numpy()), np.searchsorted(ys, part["b"].to_numpy())
            values = part[col].to_numpy()
            arr[ia, ib] = values if scale else 100.0 * (1.0 - values)  # loss-landscape keeps accuracy in percent
            out[f"{split}_{name}"] = arr
    return sweep, k, out


def write_hdf5(path: Path, data: dict, attrs: dict) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for name, arr in data.items():
            f.create_dataset(name, data=arr)
        f.attrs.update(attrs)


def write_vtk(path: Path, data: dict, title: str) -> None:
    """Legacy ASCII VTK STRUCTURED_GRID: x fastest, then y; every 2-D field as point data."""
    xs, ys = data["xcoordinates"], data["ycoordinates"]
    lines = ["# vtk DataFile Version 3.0", title[:255].replace("\n", " "), "ASCII", "DATASET STRUCTURED_GRID",
             f"DIMENSIONS {len(xs)} {len(ys)} 1", f"POINTS {len(xs) * len(ys)} double"]
    lines += [f"{float(x)!r} {float(y)!r} 0.0" for y in ys for x in xs]
    lines.append(f"POINT_DATA {len(xs) * len(ys)}")
    for name, arr in data.items():
        if arr.ndim == 2:
            lines += [f"SCALARS {name} double 1", "LOOKUP_TABLE default"]
            lines += [repr(float(arr[i, j])) for j in range(len(ys)) for i in range(len(xs))]
    path.write_text("\n".join(lines) + "\n")
