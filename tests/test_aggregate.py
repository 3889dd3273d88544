"""Polars tables against a plain numpy computation over the same points."""
import logging

import numpy as np
import polars as pl
import pytest

from raysweep.analysis import aggregate, curves
from raysweep.analysis.metrics import curve_metrics
from raysweep.sweep.execute import run_local
from raysweep.sweep.planner import plan
from raysweep.train.loop import train_replicate


@pytest.fixture
def swept(tiny_job, store):
    for k in range(2):
        train_replicate(tiny_job, k, store)
    run_local(tiny_job, store, plan(tiny_job, store, [0, 1]))
    return tiny_job, store


def test_curves_are_mean_and_sample_std(swept):
    job, store = swept
    tables = aggregate.aggregate(store, job)
    points = aggregate.scan_points(store, job).collect()
    c = tables["curves"]
    rows = points.filter(pl.col("sweep") == "i1", pl.col("split") == "train", pl.col("alpha") == 0.3)
    got = c.filter(pl.col("sweep") == "i1", pl.col("split") == "train", pl.col("alpha") == 0.3).row(0, named=True)
    loss = rows["loss"].to_numpy()
    assert len(loss) == 2 and got["n"] == 2
    assert got["loss_mean"] == pytest.approx(loss.mean()) and got["loss_std"] == pytest.approx(loss.std(ddof=1))
    # I5 pairs (i < j) with two replicates: one pair, so std is null
    i5 = c.filter(pl.col("sweep") == "i5")
    assert i5["n"].unique().to_list() == [1] and i5["loss_std"].null_count() == i5.height


def test_barriers_are_means_of_per_curve_metrics(swept):
    job, store = swept
    b = aggregate.aggregate(store, job)["barriers"]
    points = aggregate.scan_points(store, job).collect()
    per = []
    for k in range(2):
        curve = points.filter(pl.col("sweep") == "i2", pl.col("replicate_a") == k, pl.col("step_a") == 5).sort("alpha")
        per.append(curve_metrics(curve["alpha"].to_list(), curve["error"].to_list()))
    got = b.filter(pl.col("sweep") == "i2", pl.col("step") == 5, pl.col("metric") == "error").row(0, named=True)
    for m in ("max_increase", "barrier_linear", "peak_over_ends", "max_bump"):
        vals = np.array([p[m] for p in per])
        assert got[f"{m}_mean"] == pytest.approx(vals.mean(), abs=1e-12)
    assert got["monotone_fraction"] == pytest.approx(np.mean([p["monotone"] for p in per]))
    assert got["n"] == 2 and got["distance_mean"] > 0


def test_duplicates_are_dropped_and_reported(swept, caplog):
    job, store = swept
    before = aggregate.aggregate(store, job)
    some = aggregate.point_paths(store, job)[0]
    store.write_bytes(some.replace(".parquet", "-copy.parquet"), store.read_bytes(some))
    with caplog.at_level(logging.WARNING, logger="raysweep"):
        after = aggregate.aggregate(store, job)
    assert "duplicate point rows" in caplog.text
    assert after["curves"].equals(before["curves"])


def test_checkpoints_table_is_the_learning_curve(swept):
    job, store = swept
    ck = aggregate.checkpoints(store, job)
    assert ck.height == 2 * 4 and set(ck["replicate"]) == {0, 1}
    assert {"train_loss", "test_error", "sha256", "epoch"} <= set(ck.columns)


def _synthetic_points(rng):
    """Curves of every shape the metrics rule covers: I7 grids beyond [0, 1], I4 windows inside it,
    NaN inside and outside [0, 1], a grid without α = 1, one extra metric recorded by one sweep only."""
    rows = []
    grids = {"i1": np.linspace(0, 1, 11), "i7": np.linspace(-0.5, 1.5, 9), "i4": np.linspace(0, 0.01, 5),
             "half": np.linspace(0, 0.5, 6)}
    for sweep, alphas in grids.items():
        for k in range(3):
            for step in (0, 4):
                loss = rng.normal(size=len(alphas)).cumsum() + 3
                if sweep == "i1" and k == 1 and step == 4:
                    loss[5] = np.nan  # inside [0, 1]: every metric NaN
                if sweep == "i7" and k == 2:
                    loss[0] = np.nan  # outside [0, 1]: measured as if absent
                for a, v in zip(alphas, loss):
                    rows.append({"sweep": sweep, "replicate_a": k, "step_a": step, "replicate_b": k, "step_b": 9,
                                 "alpha": float(a), "split": "test", "item": f"r{k}-x", "loss": float(v),
                                 "error": float(abs(v) / 10), "distance": 2.0 + k, "norm_a": float(k),
                                 "top5_error": float(v / 7) if sweep == "i1" else None})
    return pl.DataFrame(rows, schema_overrides={"replicate_a": pl.Int32, "replicate_b": pl.Int32})


def test_per_curve_metrics_equal_a_plain_loop_over_curves():
    points = _synthetic_points(np.random.default_rng(4))
    got = curves.per_curve(points)
    n = 0
    for (sweep, k, step), curve in points.sort("alpha").group_by("sweep", "replicate_a", "step_a"):
        for metric in ("loss", "error", "top5_error"):
            row = got.filter(pl.col("sweep") == sweep, pl.col("replicate_a") == k, pl.col("step_a") == step,
                             pl.col("metric") == metric)
            if metric == "top5_error" and sweep != "i1":
                assert row.height == 0  # a metric another sweep recorded
                continue
            ref = curve_metrics(curve["alpha"].to_list(), curve[metric].to_list())
            r = row.row(0, named=True)
            for m, v in ref.items():
                if v is None or r[m] is None:
                    assert v is None and r[m] is None, (sweep, k, step, metric, m)
                elif isinstance(v, float) and np.isnan(v):
                    assert np.isnan(r[m]), (sweep, k, step, metric, m)
                else:
                    assert r[m] == v, (sweep, k, step, metric, m)  # the same float operations: equal
            assert r["relative_distance"] == (None if k == 0 else (2.0 + k) / k)
            n += 1
    assert n == 4 * 3 * 2 * 2 + 3 * 2


def test_curves_equal_numpy_means_and_stds():
    points = _synthetic_points(np.random.default_rng(5))
    got = curves.curves(points)
    for (sweep, step, alpha), g in points.group_by("sweep", "step_a", "alpha"):
        r = got.filter(pl.col("sweep") == sweep, pl.col("step_a") == step, pl.col("alpha") == alpha).row(0, named=True)
        loss = g.sort("replicate_a")["loss"].to_numpy()
        assert r["n"] == 3 and r["loss_mean"] == pytest.approx(loss.mean(), rel=1e-14, nan_ok=True)
        assert r["loss_std"] == pytest.approx(loss.std(ddof=1), rel=1e-12, nan_ok=True)


def test_tables_do_not_depend_on_how_the_points_are_partitioned(swept, monkeypatch):
    job, store = swept
    whole = aggregate.line_tables(store, job)
    monkeypatch.setattr(curves, "PART_ROWS", 7)  # many small parts, each a few step_a values
    assert len(curves._bounds(aggregate.line_points(store, job).collect())) > 3
    parted = aggregate.line_tables(store, job)
    assert whole[0].equals(parted[0]) and whole[1].equals(parted[1])  # bitwise
