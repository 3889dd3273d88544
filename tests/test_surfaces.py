"""The surface table in the files other tools read: loss-landscape's HDF5 layout and a VTK grid for ParaView."""
import copy

import h5py
import meshio
import numpy as np
from typer.testing import CliRunner

from raysweep.cli import app

from conftest import TINY, run_in_process, write_job_toml

RAW = {**copy.deepcopy(TINY), "name": "surf", "sweeps": [
    {"name": "t5", "kind": "line_and_random", "alpha": {"start": 0.0, "stop": 1.0, "num": 3},
     "beta": {"start": -1.0, "stop": 1.0, "num": 4}, "splits": ["train", "test"]}]}


def test_a_plane_is_written_for_loss_landscape_and_paraview(tmp_path):
    run = run_in_process(RAW, tmp_path / "s")
    job_file = write_job_toml(tmp_path / "s.toml", RAW)
    grid = run.table("surface").to_pandas()
    grid = grid[(grid["kind"] == "grid") & (grid["replicate"] == 0)]
    xs, ys = sorted(set(grid["a"])), sorted(set(grid["b"]))
    store = ["--storage", str(tmp_path / "s")]
    r = CliRunner().invoke(app, ["results", job_file, "--table", "surface", "--format", "hdf5", "--out",
                                 str(tmp_path / "t5.h5"), *store])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "t5.h5") as f:
        assert list(f["xcoordinates"][:]) == xs and list(f["ycoordinates"][:]) == ys
        for _, row in grid.iterrows():  # every cell, looked up by hand
            i, j = xs.index(row["a"]), ys.index(row["b"])
            assert f[f"{row['split']}_loss"][i, j] == row["loss"]
            assert np.isclose(f[f"{row['split']}_acc"][i, j], 100 * (1 - row["error"]))
        assert f.attrs["sweep"] == "t5" and f["train_loss"].shape == (3, 4)
    r = CliRunner().invoke(app, ["results", job_file, "--table", "surface", "--format", "vtk", "--out",
                                 str(tmp_path / "t5.vtk"), *store])
    assert r.exit_code == 0, r.output
    mesh = meshio.read(tmp_path / "t5.vtk")
    assert mesh.points.shape == (12, 3)
    for _, row in grid[grid["split"] == "test"].iterrows():
        n = ys.index(row["b"]) * len(xs) + xs.index(row["a"])  # x fastest
        assert tuple(mesh.points[n][:2]) == (row["a"], row["b"])
        assert np.isclose(mesh.point_data["test_loss"][n], row["loss"], rtol=1e-15)
    r = CliRunner().invoke(app, ["results", job_file, "--table", "curves", "--format", "hdf5", "--out",
                                 str(tmp_path / "x.h5"), *store])
    assert r.exit_code == 2 and "--table surface" in r.output
