"""T2 projections and T6 function maps against direct numpy computations."""
import numpy as np
import polars as pl
import pytest
from conftest import TINY

from raysweep.analysis import aggregate
from raysweep.analysis.mds import mds_maps
from raysweep.analysis.scan import point_paths, scan
from raysweep.data import load_splits
from raysweep.evaluate.trajectory import projection
from raysweep.io.schemas import FUNCTION_SCHEMA
from raysweep.spec import parse_job
from raysweep.sweep.execute import run_local
from raysweep.sweep.planner import plan
from raysweep.train.loop import train_replicate


def test_projection_against_least_squares():
    rng = np.random.default_rng(0)
    thetas = [rng.normal(size=50) for _ in range(6)]
    got = projection(thetas)
    d_T = thetas[-1] - thetas[0]
    for th, g in zip(thetas, got):
        coef, *_ = np.linalg.lstsq(d_T[:, None], th - thetas[0], rcond=None)
        a = coef[0] * np.linalg.norm(d_T)            # coordinate along the unit vector u
        resid = th - thetas[0] - coef[0] * d_T
        assert g["alpha"] == pytest.approx(a) and g["beta"] == pytest.approx(np.linalg.norm(resid))
        assert g["norm"] == pytest.approx(np.linalg.norm(th))
    assert got[0]["alpha"] == 0 and got[0]["beta"] == 0
    assert got[-1]["alpha"] == pytest.approx(np.linalg.norm(d_T)) and got[-1]["beta"] == pytest.approx(0, abs=1e-9)


def test_mds_is_reproducible_and_uses_hamming_for_kappa():
    rng = np.random.default_rng(1)
    tau = rng.random((12, 30))
    kappa = rng.integers(0, 3, size=(12, 40))
    a1, k1 = mds_maps(tau, kappa)
    a2, k2 = mds_maps(tau, kappa)
    assert a1.shape == k1.shape == (12, 2)
    assert np.array_equal(a1, a2) and np.array_equal(k1, k2)
    # identical κ vectors land on the same point
    kappa[5] = kappa[3]
    _, k3 = mds_maps(tau, kappa)
    assert np.linalg.norm(k3[5] - k3[3]) < 1e-3 * np.abs(k3).max()


def test_trajectory_sweeps_end_to_end(store):
    raw = {**TINY, "replicates": 3, "sweeps": [{"name": "t2", "kind": "projection"},
                                                {"name": "t6", "kind": "function_map", "examples": 50}]}
    job = parse_job(raw)
    for k in range(3):
        train_replicate(job, k, store)
    items = plan(job, store, [0, 1, 2])
    assert len(items) == 6 and all(len(it.endpoints) == 4 for it in items)
    results = run_local(job, store, items)
    assert all(r["status"] == "ok" for r in results), results
    traj = aggregate.trajectory(store, job)
    assert traj.height == 3 * 4
    first = traj.filter(pl.col("step") == 0)
    last = traj.filter(pl.col("step") == 20)
    assert first["alpha"].to_list() == [0.0] * 3 and last["beta"].max() < 1e-6
    assert (last["alpha"] - last["distance"]).abs().max() < 1e-9
    fmap = aggregate.function_map(store, job)
    assert fmap.height == 3 * 4 and set(fmap.columns) >= {"tau_x", "tau_y", "kappa_x", "kappa_y", "epoch"}
    assert fmap.filter(pl.col("step") == 20)["epoch"].to_list() == [2.0] * 3  # 10 iterations per epoch
    stored = scan(store, point_paths(store, job, ("function_map",)), FUNCTION_SCHEMA).collect()
    tau = np.stack(stored["tau"].to_numpy()).reshape(len(stored), 50, 10)
    assert np.allclose(tau.sum(2), 1, atol=1e-5)
    assert np.array_equal(np.stack(stored["kappa"].to_numpy()), tau.argmax(2))
    assert fmap.equals(aggregate.function_map(store, job))  # MDS is seeded: same map twice


def test_planes_against_direct_numpy(store):
    """Surface values equal a direct evaluation at c + a·d1 + b·d2; directions are seeded and stored."""
    import torch

    from raysweep.io.checkpoints import load_tensors
    from raysweep.models import build_model

    raw = {**TINY, "sweeps": [
        {"name": "t5", "kind": "line_and_random", "alpha": {"start": 0.0, "stop": 1.0, "num": 3},
         "beta": {"start": -0.5, "stop": 0.5, "num": 3}},
        {"name": "t4", "kind": "random_plane", "alpha": {"start": -1.0, "stop": 1.0, "num": 3},
         "beta": {"start": -1.0, "stop": 1.0, "num": 3}, "filter_norm": True}]}
    job = parse_job(raw)
    for k in range(2):
        train_replicate(job, k, store)
    data = load_splits(job.data)
    from raysweep.sweep.prep import prepare

    items = prepare(job, store, plan(job, store, [0, 1]))  # the directions are drawn and stored once
    again = plan(job, store, [0, 1])
    assert [it.ref.sha256 for it in items] == [it.ref.sha256 for it in again]  # stored, reused
    assert all(it.ref.sha256 for it in items)
    assert all(r["status"] == "ok" for r in run_local(job, store, items))
    surf = aggregate.surface(store, job)
    grid = surf.filter(pl.col("kind") == "grid")
    assert grid.height == 2 * 2 * 9  # 2 sweeps x 2 replicates x 3 x 3
    it = next(i for i in items if i.sweep == "t5" and i.replicate == 1)
    plane = load_tensors(store, it.ref.path)
    model = build_model(job.model, data.in_shape, data.num_classes).double().eval()
    for row in grid.filter(pl.col("sweep") == "t5", pl.col("replicate") == 1).iter_rows(named=True):
        state = {n: plane[f"center.{n}"].double() + row["a"] * plane.get(f"d1.{n}", torch.zeros(1)).double()
                 + row["b"] * plane.get(f"d2.{n}", torch.zeros(1)).double() for n in model.state_dict()
                 if not n.endswith("num_batches_tracked")}
        model.load_state_dict(state, strict=False)
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(model(data.test_x.double()), data.test_y).item()
        assert row["loss"] == pytest.approx(loss, rel=1e-5)
    # T5's axes: a = 0 is θ_0 and a = 1 is θ_T, so the path starts at (0, 0) and ends at (1, 0)
    path = surf.filter(pl.col("kind") == "path", pl.col("sweep") == "t5", pl.col("replicate") == 1).sort("step")
    assert path["a"][0] == pytest.approx(0, abs=1e-9) and path["a"][-1] == pytest.approx(1, abs=1e-6)
    assert path["b"][0] == pytest.approx(0, abs=1e-9) and path["b"][-1] == pytest.approx(0, abs=1e-6)
    # the direction d2 is orthogonal to the line
    names = sorted(n[3:] for n in plane if n.startswith("d2."))  # the parameters (d1 also moves BN statistics)
    d1 = torch.cat([plane[f"d1.{n}"].double().reshape(-1) for n in names])
    d2 = torch.cat([plane[f"d2.{n}"].double().reshape(-1) for n in names])
    assert abs(float(d1 @ d2)) < 1e-3 * float(d1.norm() * d2.norm())
    # filter-normalised random plane: biases and BN parameters get no direction
    p4 = load_tensors(store, next(i for i in items if i.sweep == "t4").ref.path)
    assert float(p4["d1.1.bias"].abs().sum()) == 0 and float(p4["d1.2.weight"].abs().sum()) == 0


def test_path_surface_against_direct_computation(store):
    """T3: J(θ_0 + a·(θ_T − θ_0) + b·D·v(t*(a))) recomputed in float64 from the checkpoints."""
    import torch

    from raysweep.io.checkpoints import load_tensors
    from raysweep.io.manifests import read_manifests
    from raysweep.models import build_model

    raw = {**TINY, "model": {"name": "mlp", "hidden": [16]}, "sweeps": [
        {"name": "t3", "kind": "path_surface", "alpha": {"start": 0.0, "stop": 1.0, "num": 4},
         "beta": {"start": -0.5, "stop": 0.5, "num": 3}}]}
    job = parse_job(raw)
    train_replicate(job, 0, store)
    data = load_splits(job.data)
    items = plan(job, store, [0])
    assert all(r["status"] == "ok" for r in run_local(job, store, items))
    surf = aggregate.surface(store, job)
    m = read_manifests(store, job, 0)
    th = {s: load_tensors(store, e["path"], e["sha256"]) for s, e in m.items()}
    names = [n for n, _ in build_model(job.model, data.in_shape, 10).named_parameters()]
    flat = lambda t: torch.cat([t[n].double().reshape(-1) for n in names])  # noqa: E731
    t0, tT = flat(th[0]), flat(th[20])
    D = float((tT - t0).norm())
    u = (tT - t0) / D
    path = surf.filter(pl.col("kind") == "path").sort("step")
    for s, a, b in path.select("step", "a", "b").iter_rows():
        d = flat(th[s]) - t0
        assert a == pytest.approx(float(d @ u) / D, abs=1e-9)
        assert b == pytest.approx(float((d - (d @ u) * u).norm()) / D, abs=1e-9)
    model = build_model(job.model, data.in_shape, 10).double().eval()
    grid = surf.filter(pl.col("kind") == "grid")
    assert grid.height == 4 * 3
    for s, a, b, loss in grid.select("step", "a", "b", "loss").iter_rows():
        d = flat(th[s]) - t0
        alpha = float(d @ u)
        resid = d - alpha * u
        v = resid / resid.norm()
        theta = t0 + a * (tT - t0) + b * D * v
        sizes = [th[0][n].numel() for n in names]
        state = {n: p.reshape(th[0][n].shape) for n, p in zip(names, torch.split(theta, sizes))}
        model.load_state_dict(state)
        with torch.no_grad():
            ref = torch.nn.functional.cross_entropy(model(data.test_x.double()), data.test_y).item()
        assert loss == pytest.approx(ref, rel=1e-5)
        assert s not in (0, 20)  # t*(a) is always a checkpoint that leaves the line


def test_t5_on_a_batchnorm_net_reaches_theta_T_at_a_1(tmp_path):
    """T5's a axis runs θ_0 → θ_T with the BN running statistics: at (a, b) = (1, 0) the grid point is
    θ_T itself, so its loss equals θ_T's (I1 at α = 1), and (0, 0) equals θ_0's."""
    import polars as pl
    from conftest import TINY, run_in_process

    raw = {**TINY, "name": "t5bn", "sweeps": [
        {"name": "i1", "kind": "init_to_final", "alpha": {"num": 2}, "bn": "interpolate"},
        {"name": "t5", "kind": "line_and_random", "alpha": {"values": [0.0, 1.0]},
         "beta": {"values": [0.0, 0.5]}}]}
    run = run_in_process(raw, tmp_path / "s")
    assert run.job.model.batchnorm
    i1 = run.curves.filter(pl.col("sweep") == "i1").collect()
    grid = run.surface.filter(pl.col("kind") == "grid", pl.col("b") == 0.0).collect()
    for k in (0, 1):
        rows = grid.filter(pl.col("replicate") == k).sort("a")
        ends = run.points.filter(pl.col("sweep") == "i1", pl.col("replicate_a") == k).sort("alpha").collect()
        assert rows["loss"].to_list() == pytest.approx(ends["loss"].to_list(), rel=1e-5)
    assert i1.height == 2


def test_hamming_equals_the_broadcast_comparison():
    from raysweep.analysis.mds import hamming

    rng = np.random.default_rng(3)
    kappa = rng.integers(0, 10, size=(57, 301)).astype(np.int16)
    kappa[5] = kappa[9]  # identical rows: distance 0
    ref = (kappa[:, None, :] != kappa[None, :, :]).mean(2)
    assert np.array_equal(hamming(kappa), ref) and hamming(kappa)[5, 9] == 0
