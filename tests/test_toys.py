"""B's stochastic models and G's random-walk control, against direct computations."""
import numpy as np
import pytest
from typer.testing import CliRunner

from raysweep.analysis.toys import memory_of_start, random_walk, stochastic_map, stochastic_paths
from raysweep.cli import app


def test_stochastic_model_multiplies_picked_coordinates_by_point_nine():
    p = stochastic_paths("uniform", vectors=2, dim=8, steps=50, records=5, seed=3)
    assert p.shape == (2, 6, 8)
    ratio = p[:, 1:] / p[:, :-1]
    exponents = np.log(ratio) / np.log(0.9)  # each coordinate shrank by 0.9^(times it was picked)
    assert np.allclose(exponents, np.round(exponents)) and np.all(np.round(exponents) >= 0)
    assert int(np.round(exponents).sum()) == 2 * 5 * 10  # 10 picks per record per vector


def test_zipf_keeps_a_memory_of_the_start_uniform_does_not():
    zipf = memory_of_start(stochastic_paths("zipf", seed=0))
    uniform = memory_of_start(stochastic_paths("uniform", seed=0))
    assert zipf > 2 * uniform  # B Fig 7-8
    p = stochastic_paths("zipf", seed=0)
    kept = p[:, -1] / p[:, 0]
    # Zipf: the first coordinates are picked thousands of times, the last few times (0.9^~3)
    assert kept[:, :10].max() < 1e-6 and kept[:, -100:].mean() > 0.5


def test_stochastic_map_is_seeded():
    a, b = stochastic_map("zipf", steps=2000), stochastic_map("zipf", steps=2000)
    assert a.shape == (5 * 21, 5) and a.equals(b)


def test_random_walk_projection():
    w = random_walk(50, steps=200, solution=150, seed=1)
    rng = np.random.default_rng(1)
    walk = np.concatenate([np.zeros((1, 50)), rng.normal(size=(200, 50)).cumsum(0)])
    u = walk[150] / np.linalg.norm(walk[150])
    assert np.allclose(w["alpha"].to_numpy(), walk @ u)
    assert np.allclose(w["beta"].to_numpy(), np.linalg.norm(walk - np.outer(walk @ u, u), axis=1))
    assert w["beta"][150] < 1e-9 and w.height == 201


def test_toy_commands_write_reports(tmp_path):
    r = CliRunner().invoke(app, ["toy", "breuel", "--steps", "2000", "--out", str(tmp_path / "b.html")])
    assert r.exit_code == 0 and "zipf: spread kept" in r.output and "vegaEmbed" in (tmp_path / "b.html").read_text()
    r = CliRunner().invoke(
        app, ["toy", "random-walk", "--dims", "10", "--dims", "100", "--out", str(tmp_path / "w.html")]
    )
    assert r.exit_code == 0 and (tmp_path / "w.html").exists()
    r = CliRunner().invoke(app, ["toy", "breuel", "--law", "pareto", "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2


def test_deep_linear_regression_curves_match_the_closed_form(store):
    """y = w1·w2·x on y = x: along any line, loss(α) = (w1(α)·w2(α) − 1)² · mean(x²) exactly."""
    import polars as pl

    from raysweep.analysis import aggregate
    from raysweep.data import load_splits
    from raysweep.io.checkpoints import load_tensors
    from raysweep.jobs import load_job
    from raysweep.sweep.execute import run_local
    from raysweep.sweep.planner import plan
    from raysweep.sweep.prep import prepare
    from raysweep.train.loop import train_replicate
    from raysweep.work.items import LineItem

    job = load_job("linreg_depth2", ["replicates=2", "train.epochs=5"])
    for k in range(2):
        train_replicate(job, k, store)
    items = prepare(job, store, plan(job, store, [0, 1]))  # I6's random points drawn
    assert all(r["status"] == "ok" for r in run_local(job, store, items))
    x = load_splits(job.data).test_x.double().numpy()[:, 0]
    points = aggregate.scan_points(store, job).collect()
    checked = 0
    for it in items:
        if not isinstance(it, LineItem):  # the projection sweep's item: no α
            continue
        wa, wb = (load_tensors(store, e.path, e.sha256) for e in (it.a, it.b))
        rows = points.filter(pl.col("item") == it.key, pl.col("sweep") == it.sweep).sort("alpha")
        for alpha, loss, err in rows.select("alpha", "loss", "error").iter_rows():
            w1 = (1 - alpha) * float(wa["w1"]) + alpha * float(wb["w1"])
            w2 = (1 - alpha) * float(wa["w2"]) + alpha * float(wb["w2"])
            # abs: near a solution the float32 forward resolves w1·w2 − 1 only to ~1e-7
            assert loss == pytest.approx((w1 * w2 - 1) ** 2 * np.mean(x ** 2), rel=1e-5, abs=1e-10)
            assert np.isnan(err)  # no error rate for a regression
            checked += 1
    assert checked == 2 * 100 + 1 * 201 + 2 * 100  # I1, I5 (one pair), I6
