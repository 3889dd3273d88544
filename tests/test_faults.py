"""Faults: a lost worker node, a SIGKILLed driver (during training and during the sweep), and
corrupted, truncated or deleted checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_job_toml
from typer.testing import CliRunner

import raysweep
from raysweep.api import Run
from raysweep.cli import app
from raysweep.io.schemas import PROVENANCE
from raysweep.io.store import Store
from raysweep.spec import parse_job

HERE = Path(__file__).parent
KEY = ["sweep", "replicate_a", "step_a", "replicate_b", "step_b", "alpha", "split"]

# Long enough to be killed half-way: 2 replicates x 3,000 steps, a checkpoint every epoch.
SLOW = {
    "name": "slow", "replicates": 2, "data": {"name": "blobs"},
    "model": {"name": "mlp", "hidden": [32]},
    "train": {"epochs": 30, "batch_size": 10, "checkpoints": "every_epoch", "log_splits": ["test"]},
    "sweeps": [{"name": "i2", "kind": "step_to_final", "alpha": {"num": 40}, "chunk": 5}],
}


def cli(job_file, storage):
    return [sys.executable, "-m", "raysweep.cli", "run", job_file, "--storage", str(storage), "--no-progress",
            "--no-report"]


def run_to_end(job_file, storage):
    r = subprocess.run(cli(job_file, storage), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def start_until(job_file, storage, ready, timeout=300, **popen) -> subprocess.Popen:
    """Start `raysweep run` in its own process group and wait until ready(storage) holds."""
    proc = subprocess.Popen(cli(job_file, storage), start_new_session=True, **popen)
    deadline = time.time() + timeout
    try:
        while not ready(Path(storage)):
            assert proc.poll() is None, "the run finished before it reached the point to stop it"
            assert time.time() < deadline, "the run never reached the point to stop it"
            time.sleep(0.1)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc


def run_and_kill(job_file, storage, ready, timeout=300):
    """Start `raysweep run`, SIGKILL its whole process group once ready(storage) holds."""
    proc = start_until(job_file, storage, ready, timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def settled(measure, quiet: float = 3.0, timeout: float = 60.0):
    """The value of measure() once it has not changed for `quiet` seconds."""
    value, since, deadline = measure(), time.time(), time.time() + timeout
    while time.time() - since < quiet and time.time() < deadline:
        time.sleep(0.2)
        now = measure()
        if now != value:
            value, since = now, time.time()
    return value


def tables(job_file, storage):
    run = raysweep.open(job_file, storage=str(storage))
    # where a row was computed (node, device, GPU ids) differs between runs; the numbers must not
    points = run.points.collect().sort(KEY).drop("item", *PROVENANCE)
    return points, run.checkpoints.collect().sort("replicate", "step")


@pytest.fixture(scope="module")
def slow_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    job_file = write_job_toml(root / "slow.toml", SLOW)
    run_to_end(job_file, root / "reference")
    return job_file, root


def test_sigkill_during_training_then_rerun(slow_job):
    job_file, root = slow_job
    storage = root / "killed_training"

    def mid_training(s):
        manifests = list(s.rglob("replicate_*/step_*.json"))
        return len(manifests) >= 6 and not list(s.rglob("done.json"))

    run_and_kill(job_file, storage, mid_training)
    assert not list(storage.rglob("done.json"))
    out = run_to_end(job_file, storage)
    assert "trained 2 replicate(s)" in out
    points, ck = tables(job_file, storage)
    ref_points, ref_ck = tables(job_file, root / "reference")
    assert ck["sha256"].to_list() == ref_ck["sha256"].to_list()  # bitwise the same weights
    assert points.equals(ref_points)


def interrupt(job_file, storage, ready, timeout=300) -> subprocess.CompletedProcess:
    """Start `raysweep run`, send SIGINT (Ctrl-C) once ready(storage) holds; returns how it ended."""
    proc = start_until(job_file, storage, ready, timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def test_ctrl_c_then_sigkill_during_sweep_then_rerun(slow_job):
    """Ctrl-C stops the sweep at once and says how to resume; a SIGKILL of the resumed run loses
    nothing finished either; the final tables are bitwise those of an uninterrupted run."""
    job_file, root = slow_job
    storage = root / "killed_sweep"
    total = len(tables(job_file, root / "reference")[0]) // 5  # 5 α per work item
    count = lambda s: len(list(s.rglob("points/line/*/*.parquet")))  # noqa: E731

    r = interrupt(job_file, storage, lambda s: count(s) >= 5)
    assert r.returncode == 130 and "interrupted" in r.stdout and "run the same command again" in r.stdout
    interrupted_at = settled(lambda: count(storage))
    assert interrupted_at < total
    run_and_kill(job_file, storage, lambda s: count(s) >= interrupted_at + 10)
    done_before = settled(lambda: count(storage))  # actors of the killed Ray may finish an item or two
    assert interrupted_at + 10 <= done_before < total
    out = run_to_end(job_file, storage)
    assert f"evaluated {total - done_before} of {total} work items" in out  # finished chunks kept
    points, _ = tables(job_file, storage)
    assert points.equals(tables(job_file, root / "reference")[0])
    for name in ("curves", "barriers"):  # aggregation is sorted before it reduces: std columns too
        got = Run(raysweep.open(job_file).job, Store(str(storage))).table(name)
        want = Run(raysweep.open(job_file).job, Store(str(root / "reference"))).table(name)
        assert got.equals(want), name


def test_lost_worker_node_mid_sweep(tmp_path):
    raw = {"name": "nodeloss", "replicates": 2, "data": {"name": "blobs"}, "model": {"name": "mlp", "hidden": [64, 64]},
           "train": {"epochs": 3, "batch_size": 50, "checkpoints": "every_epoch"},
           "sweeps": [{"name": "i2", "kind": "step_to_final", "alpha": {"num": 120}, "splits": ["train", "test"],
                       "chunk": 4}]}
    r = subprocess.run([sys.executable, str(HERE / "node_loss.py"), json.dumps(raw), str(tmp_path / "s"),
                        str(tmp_path / "report.json")], capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == 0 and report["removed_after"] == [3]  # a worker died after 3 results
    # (an item the dying node had already stored may never report back: it is not redone)
    run = Run(parse_job(raw), Store(str(tmp_path / "s")))
    points = run.points.collect()
    counts = points.group_by(KEY).len()
    assert counts["len"].max() == 1  # every (pair, α, split) exactly once
    assert points.height == 2 * 4 * 120 * 2  # 2 replicates x 4 checkpoints x 120 α x 2 splits


@pytest.mark.parametrize("damage", ["corrupt"])  # truncated and deleted files: test_evaluate, test_sweep
def test_damaged_checkpoint_fails_its_pairs_keeps_the_rest(ray_session, tiny_job, tmp_path, damage):
    storage = tmp_path / "st"
    job_file = write_job_toml(tmp_path / "tiny.toml")
    run = Run(tiny_job, Store(str(storage)))
    run.train(progress=False)
    victim = next(storage.rglob("replicate_1/step_00000005.safetensors"))
    data = victim.read_bytes()
    if damage == "corrupt":
        victim.write_bytes(data[:200] + bytes([data[200] ^ 0xFF]) + data[201:])
    elif damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    else:
        victim.unlink()
    r = CliRunner().invoke(app, ["run", job_file, "--storage", str(storage), "--no-progress"])
    text = " ".join(r.output.split())
    assert r.exit_code == 1
    import re
    import shlex

    # the repair names the run by its id, its storage and replicates: pasted from any folder it acts on this run
    fixes = re.findall(r"`(raysweep (?:train|run) [^`]+)`", text)
    fix = next(f for f in fixes if f.startswith("raysweep train"))
    assert fix == (f"raysweep train tiny/{run.job.hash} --storage {storage} --replicates 2 --replicate 1 --force")
    assert "step_00000005.safetensors" in text
    assert ("missing" if damage == "delete" else "does not match the sha256") in text
    items = run.plan()
    bad = [it for it in items if it.a.path.endswith("replicate_1/" + victim.name)]
    stored = run.points.collect()
    assert stored.height == sum(len(it.alphas) * len(it.splits) for it in items if it not in bad)
    assert (storage / run.dir / "report.html").exists()  # aggregation and report of what is there

    # the repairs as printed, run from another folder (where the default storage would be another run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    for command in (fix, next(f for f in fixes if f.startswith("raysweep run"))):
        done = subprocess.run([sys.executable, "-m", "raysweep", *shlex.split(command)[1:], "--no-progress"]
                              if command.startswith("raysweep run") else
                              [sys.executable, "-m", "raysweep", *shlex.split(command)[1:]],
                              capture_output=True, text=True, timeout=600, cwd=elsewhere, env=env)
        assert done.returncode == 0, command + "\n" + done.stderr[-2000:]
    assert not (elsewhere / "raysweep-results").exists()
    assert run.points.collect().height == sum(len(it.alphas) * len(it.splits) for it in run.plan())


def _as_a_terminal_starts_it() -> None:
    """A shell starts a command with SIGINT unblocked and at its default action. The test runner's process
    may be in another state after the tests before this one (a blocked or ignored signal passes on to
    children; Ray blocks SIGINT in the processes it starts): twice in a full suite, never alone, a command
    started here ran to its end through a Ctrl-C."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_at_any_moment_of_start_up_exits_130(tmp_path):
    """Ctrl-C while the command imports, starts Ray, starts Tune or trains: always the one line and exit 130
    (once 1 of 8 tries ended -11, one during the imports -2 with a traceback, and once in a suite a Ctrl-C at
    0.1 s was swallowed during the imports and the run went on to the end). A signal that comes before the
    interpreter installed its handler (~30 ms after exec, longer on a loaded machine) kills the process as it
    would any program, which a shell reports as 130 too: that case, with nothing printed, is accepted at 0.1 s."""
    for i, moment in enumerate((0.1, 0.4, 1.0, 2.0, 3.5, 6.0)):
        proc = subprocess.Popen([sys.executable, "-m", "raysweep", "run", "digits_mlp", "--replicates", "2", "--set",
                                 "train.epochs=5", "--no-report", "--storage", str(tmp_path / str(i))],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=_as_a_terminal_starts_it)
        time.sleep(moment)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGINT and not out.strip() and moment < 0.2:
            continue  # before Python ran a line of ours
        assert proc.returncode == 130, (moment, out[-2000:], signal.pthread_sigmask(signal.SIG_BLOCK, []),
                                        signal.getsignal(signal.SIGINT))
        assert "interrupted" in out and "Traceback" not in out, (moment, out[-2000:])
