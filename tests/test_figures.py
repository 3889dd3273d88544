"""`raysweep figures`: one file per paper figure, with its caption, in each format asked for."""
import copy

import polars as pl
from conftest import TINY, run_in_process
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.report.figures import figures, headline, load_tables, write_figures


def test_every_figure_of_a_run_is_written_with_its_caption(tmp_path):
    run = run_in_process({**copy.deepcopy(TINY), "name": "figs"}, tmp_path / "store")
    names = [f.name for f in figures(run.job, load_tables(run.tables))]
    # TINY: I1 (train+test), I2 (+ its I3 barriers), I5, I6, and the learning curves
    assert names == ["F-fig1-i1", "F-fig2-i2", "F-fig3-i2-barriers", "G-fig5-i5", "G-fig5-i6", "T1-learning-curves"]
    written = write_figures(run.job, run.tables, tmp_path / "out", ["png", "svg", "pdf"])
    assert len(written) == len(names) * 4
    for name in names:
        png = (tmp_path / "out" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert 300 < width < 4000 and 200 < height < 1500  # one figure, not a page of them
        assert b"<svg" in (tmp_path / "out" / f"{name}.svg").read_bytes()[:400]
        assert (tmp_path / "out" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        caption = (tmp_path / "out" / f"{name}.txt").read_text()
        assert caption.strip() and "\n\n" in caption
    i5 = next(f for f in figures(run.job, load_tables(run.tables)) if f.name == "G-fig5-i5")
    assert "pair of 2 replicates" in i5.caption and i5.heading.startswith("I5")  # I5 averages pairs, not replicates


def test_the_report_opens_with_its_headline_numbers(tmp_path):
    run = run_in_process({**copy.deepcopy(TINY), "name": "heads"}, tmp_path / "store")
    rows = dict(headline(run.job, load_tables(run.tables)))
    last = run.checkpoints.collect().filter(pl.col("step") == pl.col("step").max())
    err = last["test_error"]
    assert rows["final test error (mean ± std over replicates)"] == f"{err.mean():.4f} ± {err.std():.4f}"
    b = run.barriers.collect().filter(pl.col("sweep") == "i5", pl.col("metric") == "loss").row(0, named=True)
    assert rows["I5 i5: barrier of loss (max − mean of ends)"].startswith(f"{b['barrier_mean_mean']:.4f}")
    run.plot()
    html = run.store.read_bytes(f"{run.dir}/report.html").decode()
    assert "Headline numbers" in html and "barrier of loss" in html


def test_a_format_that_does_not_exist_is_refused():
    r = CliRunner().invoke(app, ["figures", "digits_mlp", "--format", "png,gif"])
    assert r.exit_code == 2 and "gif" in r.output and "png, svg, pdf" in r.output
