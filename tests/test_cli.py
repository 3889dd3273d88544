"""The CLI: every command, every output format, and bad input (exit code 2, nothing written)."""
import json

import polars as pl
import pytest
from typer.testing import CliRunner

from raysweep.analysis import aggregate
from raysweep.cli import app
from raysweep.sweep.execute import run_local
from raysweep.sweep.planner import plan
from raysweep.train.loop import train_replicate

runner = CliRunner()
TINY_TOML = """
name = "tiny_cli"
replicates = 2
[data]
name = "blobs"
[model]
hidden = [8]
[train]
epochs = 1
batch_size = 250
checkpoints = "list"
steps = [0, 2]
[[sweeps]]
name = "i1"
alpha = { num = 6 }
"""


@pytest.fixture
def job_file(tmp_path):
    path = tmp_path / "tiny_cli.toml"
    path.write_text(TINY_TOML)
    return str(path)


@pytest.fixture
def swept(job_file, tmp_path):
    """A finished run made in-process, so these tests need no Ray."""
    from raysweep.api import open as open_run

    storage = str(tmp_path / "store")
    run = open_run(job_file, storage)
    for k in range(2):
        train_replicate(run.job, k, run.store)
    run_local(run.job, run.store, plan(run.job, run.store, [0, 1]))
    aggregate.aggregate(run.store, run.job)
    return job_file, storage


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_jobs_and_show(job_file):
    r = invoke("jobs")
    assert r.exit_code == 0 and "digits_mlp" in r.output
    r = invoke("show", "digits_mlp", "--set", "train.epochs=5")
    assert r.exit_code == 0
    assert "3 replicates x 200 iterations" in r.output and '"epochs": 5' in r.output
    assert "39 pairs x 100 α" not in r.output  # 5 epochs → 200 steps → 10 checkpoints, not 13
    assert "30 pairs x 100 α" in r.output
    r = invoke("show", job_file)
    assert r.exit_code == 0 and "2 pairs x   6 α" in r.output


@pytest.mark.parametrize("args, fragment", [
    (["show", "digits_mlp", "--set", "train.lrr=1"], "unknown key 'lrr'"),
    (["show", "digits_mlp", "--set", "train.lr=fast"], "train.lr must be float"),
    (["show", "digits_mlp", "--set", "sweeps.init_to_final.alpha.stop=-1"], "must be greater than start"),
    (["show", "digits_mlp", "--set", "sweeps.hires.alpha.num=0"], "num must be between 2"),
    (["show", "nope"], "unknown job 'nope'"),
    (["run", "digits_mlp", "--set", "model.activation=swish"], "model.activation"),
    # a parameter subset that names no tensor: refused before training (the matrix found it only after)
    (["run", "digits_mlp", "--set", 'sweeps.init_to_final.params={exclude=["head.*"]}'],
     "sweeps.init_to_final.params: 'head.*' matches no tensor"),
    (["run", "digits_mlp", "--rehearse", "--set", "sweeps.init_to_final.trim=\"global\""],
     "sweeps.init_to_final.trim is for ties sweeps"),
    (["run", "digits_mlp", "--standard-size"], "options of the rehearsal: add --rehearse"),
])
def test_bad_input_exits_2_and_writes_nothing(args, fragment, tmp_path):
    r = invoke(*args, "--storage", tmp_path / "st")
    assert r.exit_code == 2, r.output
    assert fragment in " ".join(r.output.split())
    assert not (tmp_path / "st").exists()


def test_bad_job_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nreplicates = "three"\n[train]\nepochs = -1\n')
    r = invoke("show", bad)
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and "replicates must be int" in out


def test_results_formats(swept, tmp_path):
    job, storage = swept
    r = invoke("results", job, "--storage", storage)
    assert r.exit_code == 0 and "loss_mean" in r.output
    r = invoke("results", job, "--storage", storage, "--table", "barriers", "--format", "json")
    rows = json.loads(r.output)
    assert {row["metric"] for row in rows} == {"loss", "error"}
    out = tmp_path / "pts.parquet"
    r = invoke("results", job, "--storage", storage, "--table", "points", "--format", "parquet", "--out", out)
    assert r.exit_code == 0 and pl.read_parquet(out).height == 2 * 6
    r = invoke("results", job, "--storage", storage, "--format", "csv", "--sweep", "i1")
    assert r.output.splitlines()[0].startswith("sweep,step_a,step_b,split,alpha")
    r = invoke("results", job, "--storage", storage, "--sweep", "i9")
    assert r.exit_code == 2 and "no sweep 'i9'" in r.output
    r = invoke("results", job, "--storage", storage, "--format", "parquet")
    assert r.exit_code == 2 and "--out" in r.output


def test_query_status_plot(swept, tmp_path):
    job, storage = swept
    r = invoke("query", job, "select split, count(*) as n from points group by split", "--storage", storage,
               "--format", "csv")
    assert r.exit_code == 0 and r.output.splitlines() == ["split,n", "test,12"]
    r = invoke("query", job, "select nope from curves", "--storage", storage)
    assert r.exit_code == 2 and "query failed" in r.output
    r = invoke("status", job, "--storage", storage)
    assert r.exit_code == 0 and "replicate 1: trained, 3 checkpoints" in r.output and "2/2 work items" in r.output
    out = tmp_path / "rep" / "report.html"
    r = invoke("plot", job, "--storage", storage, "--out", out, "--svg")
    assert r.exit_code == 0 and out.exists() and out.with_suffix(".svg").exists()
    assert "vegaEmbed" in out.read_text() and "cdn.jsdelivr" not in out.read_text()


def test_status_of_nothing(job_file, tmp_path):
    r = invoke("status", job_file, "--storage", tmp_path / "empty")
    assert r.exit_code == 0 and "not trained" in r.output and "waiting for training" in r.output
    r = invoke("sweep", job_file, "--storage", tmp_path / "empty")
    assert r.exit_code == 1 and "not trained yet" in r.output


def test_a_table_fits_the_terminal_and_names_what_it_leaves_out(swept):
    job_file, storage = swept
    r = runner.invoke(app, ["results", job_file, "--storage", storage, "--table", "barriers"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert max(len(ln) for ln in lines) <= 80 and "sweep" in lines[1] and "metric" in lines[1]  # one header line
    assert "more column(s): --columns all" in r.stderr and "barrier_linear_mean" in lines[1] + r.stderr
    r = runner.invoke(app, ["results", job_file, "--storage", storage, "--table", "barriers", "--columns",
                            "sweep,metric,n"], env={"COLUMNS": "200"})
    header = r.stdout.splitlines()[1]
    assert [c.strip() for c in header.strip("│ ").split("┆")] == ["sweep", "metric", "n"]
    r = runner.invoke(app, ["results", job_file, "--storage", storage, "--table", "barriers", "--columns", "nope"])
    assert r.exit_code == 2 and "are not columns of this table" in r.output and "peak_over_ends_mean" in r.output


def test_a_mean_over_fewer_members_than_planned_says_so(swept, tmp_path):
    """A replicate's points gone (as after `raysweep train JOB --replicate 1 --force`): every view says the mean
    is over 1 of 2 — the default table ("1 of 2 !" and a note), the query's columns, the figure's caption."""
    from pathlib import Path

    job_file, storage = swept
    gone = [p for p in Path(storage).rglob("*.parquet") if "/points/" in str(p) and "r1-" in p.name]
    assert gone
    for p in gone:
        p.unlink()
    r = runner.invoke(app, ["results", job_file, "--storage", storage, "--table", "barriers"])
    assert r.exit_code == 0, r.output
    assert "1 of 2 !" in r.stdout and "marked ! are means over fewer members than planned" in r.stderr
    r = invoke("query", job_file, "--storage", storage, "select n, planned, complete from barriers", "--format",
               "json")
    rows = json.loads(r.stdout)
    assert rows and all(row == {"n": 1, "planned": 2, "complete": False} for row in rows)
    r = invoke("figures", job_file, "--storage", storage, "--out", tmp_path / "figs", "--format", "svg")
    assert r.exit_code == 0, r.output
    caption = next((tmp_path / "figs").glob("*i1*.txt")).read_text()
    assert "only 1 of the 2 replicates planned (INCOMPLETE" in caption


def test_status_names_each_missing_truncated_or_damaged_checkpoint(swept):
    """From the manifests' sizes and sha256 (no tensor read): a missing file, a truncated one, and with --verify
    one whose bytes changed; with the repair for that replicate, pasted as printed."""
    from pathlib import Path

    job_file, storage = swept
    ck = sorted(Path(storage).rglob("replicate_1/step_*.safetensors"))
    assert len(ck) == 3
    ck[0].unlink()
    data = ck[1].read_bytes()
    ck[1].write_bytes(data[: len(data) // 2])
    r = invoke("status", job_file, "--storage", storage)
    out = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "replicate 0: trained, 3 checkpoints" in out and "replicate 1: trained, 2 of 3 checkpoints" in out
    assert "step 0: checkpoint missing (its manifest records sha256" in out
    assert f"step 2: {len(data) // 2:,} bytes where its manifest records {len(data):,}" in out
    assert f"repair: `raysweep train {Path(job_file).stem}/" in out and f"--storage {storage}" in out
    flipped = ck[2].read_bytes()
    ck[2].write_bytes(flipped[:100] + bytes([flipped[100] ^ 1]) + flipped[101:])
    assert "does not match the sha256" not in " ".join(invoke("status", job_file, "--storage", storage).output.split())
    r = invoke("status", job_file, "--storage", storage, "--verify")
    assert "does not match the sha256 its manifest records (damaged)" in " ".join(r.output.split())


def test_the_python_api_speaks_its_own_arguments(tmp_path):
    """Errors through raysweep.open and its Run name storage=, overrides=[...], replicates=, partial=True — not the
    command's --storage, --set."""
    import raysweep

    run = raysweep.open("digits_mlp", storage=str(tmp_path / "nothing"))
    with pytest.raises(raysweep.api.RunNotFound) as info:
        run.curves.collect()
    text = str(info.value)
    assert "storage=" in text and "overrides=" in text and "--storage" not in text and "--set" not in text
    with pytest.raises(raysweep.api.SpecError) as info:
        raysweep.open("digits_mlp", storage=str(tmp_path), overrides=["train.lrr=1"])
    assert "override 'train.lrr': unknown key 'lrr'" in str(info.value) and "--set" not in str(info.value)
    with pytest.raises(raysweep.api.SpecError) as info:
        raysweep.open("digits_mlp", storage=str(tmp_path), overrides=["train.lr=-1"])
    assert "overrides=[...]" in str(info.value) and "--set" not in str(info.value)
    r = invoke("results", "digits_mlp", "--storage", tmp_path / "nothing")  # the command keeps its own words
    assert r.exit_code == 2 and "--set" in r.output
