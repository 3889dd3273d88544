"""Answers that must not mislead: a damaged points file, a sweep never run with the settings asked
for, a broken pipe, a storage path that cannot be used, a write the store keeps otherwise, the
first ETAs of a sweep."""
import copy
import subprocess
import sys

import polars as pl
import pytest
from conftest import TINY, run_in_process, write_job_toml
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.errors import WriteMismatch
from raysweep.io.store import Store

runner = CliRunner()
RAW = {**copy.deepcopy(TINY), "name": "misleading", "sweeps": TINY["sweeps"][:2]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("misleading")
    return run_in_process(RAW, root / "reference"), root


def _damage(run) -> list[str]:
    files = sorted(run.store.list(f"{run.dir}/points", ".parquet", recursive=True))
    truncated, emptied = files[0], files[-1]
    data = run.store.read_bytes(truncated)
    run.store.write_bytes(truncated, data[: len(data) // 2])
    run.store.write_bytes(emptied, b"")
    return [truncated, emptied]


def test_an_unreadable_points_file_is_named_then_evaluated_again(reference, tmp_path):
    ref, _ = reference
    run = run_in_process(RAW, tmp_path / "damaged")
    bad = _damage(run)
    job_file = write_job_toml(tmp_path / "m.toml", RAW)
    store = ["--storage", str(tmp_path / "damaged")]

    r = runner.invoke(app, ["results", job_file, "--table", "barriers", *store])
    assert r.exit_code == 0, r.output  # what can be read is shown, and the damage is named with its repair
    text = " ".join(r.output.split())
    run_id = f"misleading/{run.job.hash}"  # the fix pastes as printed, naming this run whatever --set made it
    assert f"2 stored points file(s) of {run_id} cannot be read" in text
    assert f"`raysweep run {run_id} --storage {tmp_path / 'damaged'}" in text  # pastes as printed, from anywhere
    assert all(b.rsplit("/", 1)[-1] in text for b in bad)
    r = runner.invoke(app, ["status", job_file, *store])
    assert r.exit_code == 0 and "damaged: 2 points file(s) cannot be read" in r.output

    summary = run.sweep(progress=False, local=True)  # the write side deletes them and evaluates them again
    assert summary.items_run == 2 and not summary.failures
    for name in ("curves", "barriers"):
        assert run.table(name).equals(ref.table(name))  # bitwise the same as never damaged
    r = runner.invoke(app, ["status", job_file, *store])
    assert "damaged:" not in r.output


def test_a_sweep_never_run_with_these_settings_is_named_not_left_out(reference, tmp_path):
    _, root = reference
    job_file = write_job_toml(tmp_path / "m.toml", RAW)
    store = ["--storage", str(root / "reference")]
    unrun = ["--set", "sweeps.i1.alpha.num=50"]
    for cmd in (
        ["results", job_file],
        ["results", job_file, "--table", "barriers"],
        ["query", job_file, "select count(*) from curves"],
        ["plot", job_file, "--out", str(tmp_path / "r.html")],
    ):
        r = runner.invoke(app, [*cmd, *unrun, *store])
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and "no points are stored for sweep(s) i1" in text and "--partial" in text, cmd
    r = runner.invoke(app, ["results", job_file, *unrun, *store, "--partial", "--format", "csv"])
    assert r.exit_code == 0 and "no points are stored for sweep(s) i1" in " ".join(r.output.split())
    assert "i2," in r.output and "\ni1," not in r.output
    r = runner.invoke(app, ["results", job_file, *unrun, *store, "--sweep", "i2", "--format", "csv"])
    assert r.exit_code == 0  # the sweep asked for is stored: nothing to warn about


def test_a_closed_pipe_ends_quietly(reference):
    _, root = reference
    job_file = write_job_toml(root / "m.toml", RAW)
    sql = "select p.*, q.loss as q_loss from points p cross join points q"  # ~1 MB: more than a pipe holds
    cmd = (f"{sys.executable} -m raysweep.cli query {job_file} '{sql}' --format csv "
           f"--storage {root / 'reference'} | head -2; exit ${{PIPESTATUS[0]}}")
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "" and len(out.stdout.splitlines()) == 2


def test_listing_the_jobs_into_a_closed_pipe_ends_quietly():
    cmd = f"{sys.executable} -m raysweep.cli jobs | head -1; exit ${{PIPESTATUS[0]}}"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "" and len(out.stdout.splitlines()) == 1


def test_a_storage_path_that_cannot_be_used_is_input_to_fix(tmp_path):
    job_file = write_job_toml(tmp_path / "m.toml", RAW)
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for cmd in (["results", job_file], ["runs"], ["status", job_file], ["run", job_file, "--no-progress"]):
        r = runner.invoke(app, [*cmd, "--storage", str(afile)])
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and f"{afile} is a file, not a folder" in text and "reachable" not in text, cmd
    r = runner.invoke(app, ["run", job_file, "--storage", "/proc/raysweep-cannot", "--no-progress"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "/proc" in text and "reachable" not in text and "nothing was written" in text


def test_every_write_is_read_back_at_the_size_sent(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "s"))
    put, calls = Store._put, []

    def short_once(self, target, data):  # a store that keeps a shorter object the first time
        calls.append(target)
        put(self, target, data[:-1] if len(calls) == 1 else data)
    monkeypatch.setattr(Store, "_put", short_once)
    store.write_bytes("a/b.bin", b"0123456789")
    assert len(calls) == 2 and store.read_bytes("a/b.bin") == b"0123456789"

    monkeypatch.setattr(Store, "_put", lambda self, target, data: put(self, target, data + b"chunk-signature"))
    with pytest.raises(WriteMismatch, match="reads back as 25 bytes after writing 10"):
        store.write_bytes("a/c.bin", b"0123456789")
    from raysweep.sweep.execute import _kind_of

    assert _kind_of(WriteMismatch("x")) == "transient"  # retried per item by the sweep


def test_the_first_eta_of_a_sweep_leaves_the_start_up_out(monkeypatch):
    import raysweep.progress as progress

    clock, said = [0.0], []
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress, "say", said.append)
    monkeypatch.setenv("RAYSWEEP_LOG_INTERVAL", "0")
    bar = progress.SweepProgress(total=12, done=2, plain=True)
    clock[0] = 60.0  # the actors took a minute to start
    bar.update({"status": "ok"})
    for t in (61.0, 62.0):  # then an item a second
        clock[0] = t
        bar.update({"status": "ok"})
    assert said[-1].startswith("sweep: 5/12 work items") and "60.0 items/min, eta 0m07s" in said[-1]


def test_figures_say_what_they_show():
    """T1's split legend draws each split's dash; images use the shipped font that has θ₀ and ₜ; B's toy
    map is titled for what it embeds and its steps run to the model's last step."""
    from raysweep.analysis.toys import stochastic_map
    from raysweep.report.charts import FONT, FONT_DIR, image_spec, learning_chart, mds_chart

    ck = pl.DataFrame({"replicate": [0, 0], "step": [0, 8], "train_loss": [2.0, 1.0], "test_loss": [2.1, 1.2]})
    spec = image_spec(learning_chart(ck, "loss"))
    dash = spec["encoding"]["strokeDash"]
    assert dash["legend"]["symbolType"] == "stroke" and dash["legend"]["symbolOpacity"] == 1
    assert dash["sort"] == ["train", "test"] and spec["config"]["font"] == FONT
    assert (FONT_DIR / "DejaVuSans.ttf").stat().st_size > 100_000 and (FONT_DIR / "LICENSE").exists()
    toy = stochastic_map("zipf", vectors=3, dim=50, steps=2_000, records=4)
    assert sorted(toy["step"].unique().to_list()) == [0, 500, 1000, 1500, 2000]
    title = mds_chart(toy, "tau", "MDS of the 3 vectors (zipf), colour: step").to_dict()["title"]
    assert "softmax" not in title and "vectors" in title
