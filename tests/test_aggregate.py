"""Polars tables against a plain numpy computation over the same points."""
import logging

import numpy as np
import polars as pl
import pytest

from raysweep.analysis import aggregate
from raysweep.analysis.metrics import curve_metrics
from raysweep.sweep import plan, run_local
from raysweep.train import train_replicate


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
    for m in ("max_increase", "barrier_linear", "barrier_mean", "max_bump"):
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
