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
    assert rows["I5 i5: barrier of loss (max above the endpoints' line)"].startswith(f"{b['barrier_linear_mean']:.4f}")
    run.plot()
    html = run.store.read_bytes(f"{run.dir}/report.html").decode()
    assert "Headline numbers" in html and "barrier of loss" in html


def test_a_format_that_does_not_exist_is_refused():
    r = CliRunner().invoke(app, ["figures", "digits_mlp", "--format", "png,gif"])
    assert r.exit_code == 2 and "gif" in r.output and "png, svg, pdf" in r.output


def test_a_log_axis_is_labelled_over_its_whole_range():
    """The MC-bezier log panel once had no label above 0.09 while its curve reached 0.19."""
    from raysweep.report.charts import log_ticks

    ticks = log_ticks(0.09, 0.19)
    assert ticks == [0.05, 0.1, 0.2] or [round(t, 12) for t in ticks] == [0.05, 0.1, 0.2]
    assert [round(t, 12) for t in log_ticks(0.0025, 3.1)] == [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5]


def test_curves_are_drawn_against_t_and_a_curve_that_only_falls_has_no_barrier():
    import polars as pl

    from raysweep.report.charts import band_chart
    from raysweep.report.figures import headline
    from raysweep.spec import parse_job

    curves = pl.DataFrame({"alpha": [0.0, 0.5, 1.0], "split": ["test"] * 3, "n": [2] * 3,
                           "loss_mean": [2.0, 1.9, 0.1], "loss_std": [0.1] * 3})
    spec = band_chart(curves, "loss", "loss", x_title="t (along the curve)").to_dict()
    assert spec["layer"][0]["encoding"]["x"]["title"] == "t (along the curve)"
    job = parse_job({"name": "x", "sweeps": [{"name": "i6", "kind": "random_to_final", "alpha": {"num": 3}}]})
    row = {"sweep": "i6", "split": "test", "metric": "error", "step": -1, "step_a": -1, "step_b": 10, "n": 2,
           "barrier_linear_mean": 0.47, "barrier_linear_std": 0.1, "max_increase_mean": 0.0, "max_increase_std": 0.0}
    t = {"checkpoints": pl.DataFrame(), "barriers": pl.DataFrame([row]), "trajectory": pl.DataFrame()}
    label = next(what for what, _ in headline(job, t) if "i6" in what and "error" in what and "line)" in what)
    assert "barrier" not in label.split(":")[1].split("(")[0] and "never rises" in label
