"""Planes and lines in the files other tools read, read back as those tools read them: loss-landscape's
HDF5 (plot_2D.py contours meshgrid(x, y) against the array; plot_1D.py plots x against `<split>_loss`)
and VTK's own XML StructuredGrid reader (the `vtk` package), missing points blanked."""
import copy

import h5py
import numpy as np
import polars as pl
import pytest
from conftest import TINY, run_in_process, write_job_toml
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.report.surfaces import GHOST_HIDDEN_POINT, write_vtk

RAW = {**copy.deepcopy(TINY), "name": "surf", "sweeps": [
    {"name": "t5", "kind": "line_and_random", "alpha": {"start": 0.0, "stop": 1.0, "num": 3},
     "beta": {"start": -1.0, "stop": 1.0, "num": 4}, "splits": ["train", "test"]},
    {"name": "i1", "kind": "init_to_final", "alpha": {"num": 5}, "splits": ["train", "test"]}]}


def _read_vts(path):
    """(points, {name: point array}) through VTK's own XML reader."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOXML import vtkXMLStructuredGridReader

    reader = vtkXMLStructuredGridReader()
    reader.SetFileName(str(path))
    reader.Update()
    grid = reader.GetOutput()
    data = grid.GetPointData()
    arrays = {data.GetArrayName(i): vtk_to_numpy(data.GetArray(i)) for i in range(data.GetNumberOfArrays())}
    return vtk_to_numpy(grid.GetPoints().GetData()), arrays, grid


def _dims(grid) -> list:
    dims = [0, 0, 0]
    grid.GetDimensions(dims)
    return dims


def test_a_plane_is_written_as_loss_landscape_and_vtk_read_it(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = run_in_process(RAW, tmp_path / "s")
    job_file = write_job_toml(tmp_path / "s.toml", RAW)
    grid = run.table("surface").to_pandas()
    grid = grid[(grid["kind"] == "grid") & (grid["replicate"] == 0)]
    xs, ys = sorted(set(grid["a"])), sorted(set(grid["b"]))
    assert (len(xs), len(ys)) == (3, 4)  # not square: a transposed layout cannot pass
    store = ["--storage", str(tmp_path / "s")]
    r = CliRunner().invoke(app, ["results", job_file, "--table", "surface", "--format", "hdf5", "--out",
                                 str(tmp_path / "t5.h5"), *store])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "t5.h5") as f:  # as plot_2D.py reads it
        x, y = np.array(f["xcoordinates"][:]), np.array(f["ycoordinates"][:])
        X, Y = np.meshgrid(x, y)
        Z = np.array(f["test_loss"][:])
        plt.contour(X, Y, Z)  # the call that crashed on a non-square plane
        plt.close("all")
        assert list(x) == xs and list(y) == ys and Z.shape == (4, 3)
        for _, row in grid.iterrows():  # every cell, looked up by hand: row = y, column = x
            i, j = xs.index(row["a"]), ys.index(row["b"])
            assert f[f"{row['split']}_loss"][j, i] == row["loss"]
            assert np.isclose(f[f"{row['split']}_acc"][j, i], 100 * (1 - row["error"]))
            assert X[j, i] == row["a"] and Y[j, i] == row["b"]
        assert f.attrs["sweep"] == "t5" and "train_loss" in f  # the train split was evaluated: plot_2D's default
    r = CliRunner().invoke(app, ["results", job_file, "--table", "surface", "--format", "vtk", "--out",
                                 str(tmp_path / "t5.vts"), *store])
    assert r.exit_code == 0, r.output
    points, arrays, vtk_grid = _read_vts(tmp_path / "t5.vts")
    assert _dims(vtk_grid) == [3, 4, 1] and points.shape == (12, 3)
    for _, row in grid[grid["split"] == "test"].iterrows():
        n = ys.index(row["b"]) * len(xs) + xs.index(row["a"])  # x fastest
        assert tuple(points[n][:2]) == (row["a"], row["b"])
        assert arrays["test_loss"][n] == row["loss"]
    assert not arrays["vtkGhostType"].any()  # every point evaluated: none blanked
    r = CliRunner().invoke(app, ["results", job_file, "--table", "surface", "--format", "vtk", "--out",
                                 str(tmp_path / "t5.vtk"), *store])
    assert r.exit_code == 2 and "FILE.vts" in " ".join(r.output.split())

    # a line sweep's curves: the mean ± std curves at the top level, as plot_1D.py reads them (x against
    # train_loss / test_loss), each replicate's own line under lines/; means and stds from a plain numpy reference
    r = CliRunner().invoke(app, ["results", job_file, "--table", "curves", "--sweep", "i1", "--format", "hdf5",
                                 "--out", str(tmp_path / "i1.h5"), *store])
    assert r.exit_code == 0, r.output
    assert "mean ± std curves of sweep i1 at the top level" in r.output
    points_table = run.points.collect().to_pandas()
    i1 = points_table[points_table["sweep"] == "i1"]
    with h5py.File(tmp_path / "i1.h5") as f:
        x = f["xcoordinates"][:]
        assert list(x) == sorted(set(i1["alpha"])) and x.ndim == 1
        for split in ("train", "test"):
            rows = i1[i1["split"] == split]
            per_alpha = [rows[rows["alpha"] == a] for a in x]
            assert np.allclose(f[f"{split}_loss"][:], [r["loss"].mean() for r in per_alpha], rtol=1e-12)
            assert np.allclose(f[f"{split}_loss_std"][:], [r["loss"].std(ddof=1) for r in per_alpha], rtol=1e-9)
            assert np.allclose(f[f"{split}_acc"][:], [100 * (1 - r["error"].mean()) for r in per_alpha])
            assert list(f[f"{split}_n"][:]) == [len(r) for r in per_alpha]
            for k in sorted(set(rows["replicate_a"])):
                mine = rows[rows["replicate_a"] == k].sort_values("alpha")
                group = next(g for g in f["lines"] if g.startswith(f"r{k}-"))
                assert np.array_equal(f[f"lines/{group}/{split}_loss"][:], mine["loss"].to_numpy())
        assert len(f["lines"]) == len(set(i1["replicate_a"]))
        plt.plot(x, f["train_loss"][:])
        plt.close("all")
    # a points file of one line says which line it is
    r = CliRunner().invoke(app, ["results", job_file, "--table", "points", "--sweep", "i1", "--format", "hdf5",
                                 "--out", str(tmp_path / "one.h5"), *store])
    assert r.exit_code == 0 and "wrote the line of sweep i1 from replicate 0" in r.output


def test_points_never_evaluated_are_blanked_for_vtk_readers(tmp_path):
    loss = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])  # rows = y
    write_vtk(tmp_path / "p.vts", {"xcoordinates": np.array([0.0, 0.5, 1.0]), "ycoordinates": np.array([-1.0, 1.0]),
                                   "test_loss": loss}, "a plane with a hole")
    points, arrays, grid = _read_vts(tmp_path / "p.vts")
    assert _dims(grid) == [3, 2, 1]
    assert list(arrays["vtkGhostType"]) == [0, GHOST_HIDDEN_POINT, 0, 0, 0, 0]
    assert np.isnan(arrays["test_loss"][1]) and list(arrays["test_loss"][[0, 2, 3, 4, 5]]) == [1, 3, 4, 5, 6]
    assert grid.GetPointGhostArray() is not None and not grid.IsPointVisible(1) and grid.IsPointVisible(0)


def test_iso_lines_are_the_closed_form_circles_and_labelled_once_per_level():
    """z = a² + 4b² on a grid: the line of level L is the ellipse a² + 4b² = L (contourpy interpolates linearly
    between grid points, so within a cell's curvature; a grid read with a and b swapped would fail)."""
    import polars as pl

    from raysweep.report.contours import iso_lines, levels_of

    g = np.linspace(-1, 1, 41)
    grid = pl.DataFrame([{"a": float(a), "b": float(b), "loss": float(a * a + 4 * b * b)} for a in g for b in g])
    lines, labels = iso_lines(grid, "loss", count=5)
    levels = levels_of(np.array([[0.0, 5.0]]), 5)
    assert sorted(lines["level"].unique().to_list()) == pytest.approx(levels)
    a, b = lines["a"].to_numpy(), lines["b"].to_numpy()
    assert np.allclose(a * a + 4 * b * b, lines["level"].to_numpy(), atol=2e-2)
    assert labels.height == 5 and all(np.isfinite(labels["a"].to_numpy()))
    logs = levels_of(np.array([[0.01, 10.0]]), 2, log=True)
    assert logs == pytest.approx([0.1, 1.0])  # evenly in log space between 0.01 and 10


def test_a_surface_is_drawn_back_to_front_and_turns_in_the_report(tmp_path):
    """The 3-D view: one quad per grid cell, far ones first; in the HTML report (headless Chromium, driven over the
    DevTools protocol) each plane's canvas draws its quads, and a real mouse drag turns the one dragged: its pixels
    on screen change, the other canvas's do not."""
    from raysweep.report.contours import surface_polygons

    run = run_in_process(RAW, tmp_path / "s")
    surface = run.table("surface").filter(pl.col("sweep") == "t5", pl.col("replicate") == 0)
    grid = surface.filter(pl.col("kind") == "grid", pl.col("split") == "train")
    polys = surface_polygons(grid, "loss")
    assert polys.height == (3 - 1) * (4 - 1)
    assert polys.sort("draw")["depth"].to_list() == sorted(polys["depth"].to_list(), reverse=True)
    report = tmp_path / "report.html"
    run.plot(out=str(report))
    from browser import Page

    page = Page(report.as_uri(), tmp_path / "profile")
    try:
        page.wait_for("document.querySelectorAll('canvas').length == 2 && "
                      "[...document.querySelectorAll('canvas')].every(c => c.dataset.drawn == '6')")  # loss, error

        def pixels(i: int) -> tuple[str, list]:  # canvas i's pixels (read by the test) and where it is on screen
            return page.evaluate(f"(() => {{const c = document.querySelectorAll('canvas')[{i}]; c.scrollIntoView(); "
                                 f"const b = c.getBoundingClientRect(); "
                                 f"return [c.toDataURL(), [b.x, b.y, b.width, b.height]];}})()")
        before, box = pixels(0)
        other_before, _ = pixels(1)
        before, box = pixels(0)
        page.drag(box[0] + box[2] / 2, box[1] + box[3] / 2, box[0] + box[2] / 2 + 60, box[1] + box[3] / 2 + 20)
        after, _ = pixels(0)
        assert after != before  # a person's drag turned it
        assert pixels(1)[0] == other_before  # and only the canvas dragged
        assert page.evaluate("document.querySelectorAll('canvas')[0].dataset.drawn") == "6"
        page.drag(box[0] + 10, box[1] + 10, box[0] + 10, box[1] + 10)  # a click without moving turns nothing
        assert pixels(0)[0] == after
    finally:
        page.close()


def test_the_3d_view_has_its_axes_the_path_on_the_surface_and_its_points_marked():
    """A closed-form plane z = 1 + a² + b: the frame's ticks span a, b and z; θ_T is drawn at (0, 0, z(0, 0)); a
    path point on a grid point sits at that point's height; PC titles carry the variance."""
    import polars as pl

    from raysweep.report.contours import View, grid_array, surface_frame

    g = [-1.0, -0.5, 0.0, 0.5, 1.0]
    grid = pl.DataFrame([{"a": a, "b": b, "loss": 1 + a * a + b} for a in g for b in g])
    path = pl.DataFrame({"a": [-1.0, 0.5], "b": [0.5, 0.0], "step": [0, 10]})
    lines, labels, track = surface_frame(grid, "loss", path, {"θ_T": (0.0, 0.0)}, ("a: PC1 (90.0%)", "b: PC2 (9.0%)"))
    view = View(*grid_array(grid, "loss"))
    ticks = [lab["text"] for lab in labels if lab["kind"] == "tick"]
    assert {"-1", "0", "1"} <= set(ticks) and "3" in ticks  # a and b from -1 to 1; z up to 1 + 1 + 1
    assert {lab["text"] for lab in labels if lab["kind"] == "title"} == {"a: PC1 (90.0%)", "b: PC2 (9.0%)", "loss"}
    mark = next(lab for lab in labels if lab["kind"] == "mark")
    assert (mark["x"], mark["y"]) == pytest.approx(view.at(0.0, 0.0, 1.0)[:2])
    assert track[0] == pytest.approx(view.at(-1.0, 0.5, 2.5)[:2]) and track[1] == pytest.approx(
        view.at(0.5, 0.0, 1.25)[:2])
    assert len(lines) == 3 and all(len(line) == 2 for line in lines)
