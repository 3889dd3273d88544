"""Answers are current, never silently empty, never mixed: tables keyed by what made them, a clear
error listing the stored runs, one schema per points folder, deterministic aggregation, a report
that cannot run stored script."""
import copy

import polars as pl
import pyarrow as pa
import pytest
from conftest import TINY, run_in_process, write_job_toml
from typer.testing import CliRunner

from raysweep.analysis import curves
from raysweep.api import Run, RunNotFound
from raysweep.cli import app
from raysweep.io import paths
from raysweep.io.store import Store
from raysweep.spec import parse_job, sweep_hash
from raysweep.train.loop import train_replicate
from raysweep.work.kinds import sweep_folder

runner = CliRunner()
# Small and quick, in-process (no Ray): 3 replicates, I1 on two splits, I5, and a T2 projection.
RAW = {**TINY, "name": "answers", "replicates": 3,
       "sweeps": [{"name": "i1", "kind": "init_to_final", "alpha": {"num": 11}, "splits": ["train", "test"]},
                  {"name": "i5", "kind": "final_to_final", "alpha": {"num": 5}},
                  {"name": "t2", "kind": "projection"}]}


def _job(**changes) -> dict:
    raw = copy.deepcopy(RAW)
    raw.update(changes)
    return raw


_run = run_in_process  # train what is missing and evaluate every item in this process; aggregate


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    root = tmp_path_factory.mktemp("answers")
    return _run(RAW, root / "store"), root


def test_a_changed_grid_is_never_answered_with_the_old_tables(done):
    run, root = done
    assert run.curves.filter(pl.col("sweep") == "i1").collect()["alpha"].n_unique() == 11
    raw = _job(sweeps=[{**RAW["sweeps"][0], "alpha": {"num": 5}}] + RAW["sweeps"][1:])
    other = Run(parse_job(raw), run.store)
    # the stored tables were made from the 11-point grid: not shown for the 5-point one
    assert other.curves.filter(pl.col("sweep") == "i1").collect().height == 0
    assert other.sweep(progress=False, local=True).items_run > 0
    i1 = other.curves.filter(pl.col("sweep") == "i1").collect()
    assert sorted(set(i1["alpha"])) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # ... and the 11-point run still reads its own tables, which are current
    assert run.curves.filter(pl.col("sweep") == "i1").collect()["alpha"].n_unique() == 11


def test_fewer_replicates_aggregate_only_those(done):
    run, _ = done
    two = Run(parse_job(_job(replicates=2)), run.store)
    b = two.barriers.filter(pl.col("sweep") == "i1").collect()
    assert set(b["n"]) == {2}  # not the 3 stored
    assert set(two.barriers.filter(pl.col("sweep") == "i5").collect()["n"]) == {1}  # one pair of 2 replicates
    assert set(run.barriers.filter(pl.col("sweep") == "i5").collect()["n"]) == {3}  # 3 pairs of 3
    assert set(two.checkpoints.collect()["replicate"]) == {0, 1}


def test_retraining_invalidates_tables_and_report(tmp_path):
    run = _run(_job(replicates=2, sweeps=RAW["sweeps"][:1]), tmp_path / "s")
    run.plot()
    assert run.report_state() == "current"
    extra = paths.point_file(sweep_folder(run.dir, run.job.sweeps[0]), "r1-s0__r1-s20__a99999-99999")
    run.store.write_bytes(extra, run.store.read_bytes(run.store.list(paths.points_dir(run.dir), ".parquet", True)[0]))
    assert run.report_state() == "stale"  # drawn before a result landed
    run.store.delete(extra)
    run.forget_replicate(1)
    assert not run.store.exists(paths.tables_inputs(run.dir)) and run.report_state() == "none"
    r = runner.invoke(app, ["status", write_job_toml(tmp_path / "j.toml", _job(replicates=2, sweeps=RAW["sweeps"][:1])),
                            "--storage", str(tmp_path / "s")])
    assert "replicate 1: not trained" in r.output and "report:" not in r.output


def test_no_matching_run_is_an_error_that_lists_the_stored_runs(done, tmp_path):
    run, root = done
    job_file = write_job_toml(tmp_path / "answers.toml", RAW)
    for cmd in (["results", job_file], ["query", job_file, "select * from curves"], ["plot", job_file]):
        r = runner.invoke(app, [*cmd, "--storage", str(run.store.uri), "--set", "train.lr=0.05"])
        text = " ".join(r.output.split())
        assert r.exit_code == 2, r.output
        assert "no run of answers with these settings" in text and run.job.hash in text
        assert "raysweep runs --storage" in text
    with pytest.raises(RunNotFound):
        Run(parse_job(RAW), Store(str(tmp_path / "empty"))).table("curves")
    r = runner.invoke(app, ["runs", "--storage", str(run.store.uri)])
    assert r.exit_code == 0 and f"answers                  {run.job.hash}  3/3" in r.output
    assert "i1-" in r.output and "t2-" in r.output


def test_each_points_folder_holds_one_schema(done):
    run, _ = done
    base = f"{run.store.uri}/{paths.points_dir(run.dir)}"
    line = pl.scan_parquet(f"{base}/line/*/*.parquet").collect()  # every line sweep, whatever its grid
    ours = line.filter(pl.col("sweep_hash").is_in([sweep_hash(s) for s in run.job.sweeps]))
    assert ours.height == 3 * 11 * 2 + 3 * 5 and line["loss"].null_count() == 0
    traj = pl.scan_parquet(f"{base}/trajectory/*/*.parquet").collect()
    assert traj.height == 3 * 4 and "beta" in traj.columns and "loss" not in traj.columns


def test_aggregation_does_not_depend_on_the_order_rows_are_read(done):
    run, _ = done
    points = run.points.collect()
    a = curves.barriers(curves.dedupe(points))
    for seed in (1, 2, 3):
        b = curves.barriers(curves.dedupe(points.sample(fraction=1.0, shuffle=True, seed=seed)))
        assert a.equals(b)  # bitwise, std columns included
        assert curves.curves(curves.dedupe(points.sample(fraction=1.0, shuffle=True, seed=seed))).equals(
            curves.curves(curves.dedupe(points)))


def test_stored_text_cannot_run_script_in_the_report(tmp_path):
    run = _run(_job(replicates=2, sweeps=RAW["sweeps"][:1]), tmp_path / "s")
    files = run.store.list(paths.points_dir(run.dir), ".parquet", True)
    table = run.store.read_table(files[:1])
    hostile = "</script><script>alert(1)</script>"
    table = table.set_column(table.schema.get_field_index("split"), "split", pa.array([hostile] * table.num_rows))
    run.store.write_table(files[0], table)
    out = tmp_path / "report.html"
    run.plot(str(out))
    page = out.read_text()
    assert hostile not in page and "alert(1)" in page  # the text is there, as data, escaped
    assert page.count("<script") == page.count("</script>") == 2  # the bundle and the chart calls only


def _snapshot(root) -> dict:
    import hashlib
    from pathlib import Path

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(root).rglob("*") if p.is_file()}


def test_read_only_commands_write_nothing(tmp_path):
    """status, results, query and plot --out only read: not even the random points, plane directions or
    T3 path projections that the sweep will need (the planner names them; `prepare` writes them)."""
    raw = _job(replicates=2, sweeps=[
        {"name": "i6", "kind": "random_to_final", "alpha": {"num": 3}},
        {"name": "t5", "kind": "line_and_random", "alpha": {"num": 3}, "beta": {"start": -1.0, "stop": 1.0, "num": 3}},
        {"name": "t3", "kind": "path_surface", "alpha": {"num": 3}, "beta": {"start": -1.0, "stop": 1.0, "num": 3}}])
    run = Run(parse_job(raw), Store(str(tmp_path / "s")))
    for k in run.replicates:
        train_replicate(run.job, k, run.store)
    job_file = write_job_toml(tmp_path / "ro.toml", raw)
    store = ["--storage", str(tmp_path / "s")]
    before = _snapshot(tmp_path / "s")
    r = runner.invoke(app, ["status", job_file, *store])
    assert r.exit_code == 0 and "sweep i6" in r.output and "0/2 work items" in r.output
    for cmd in (["results", job_file, "--table", "checkpoints"], ["query", job_file, "select count(*) from points",
                                                                   "--partial"],
                ["plot", job_file, "--out", str(tmp_path / "r.html"), "--partial"], ["runs"]):
        r = runner.invoke(app, [*cmd, *store])
        assert r.exit_code == 0, r.output
    assert _snapshot(tmp_path / "s") == before
    # the sweep then prepares them, once, and evaluates every item
    assert not run.sweep(progress=False, local=True).failures
    written = set(_snapshot(tmp_path / "s")) - set(before)
    names = {p.rsplit("/", 1)[-1] for p in written}
    assert {"random_4.safetensors", "plane_t5_" + sweep_hash(run.job.sweeps[1]) + "_v2.safetensors",
            "path_t3_" + sweep_hash(run.job.sweeps[2]) + ".json"} <= names
