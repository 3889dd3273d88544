"""`raysweep slurm` on a real one-node Slurm (tests/slurm_cluster.py): the job completes with the tables of
a local run; USR1 (Slurm's notice before the time limit) stops it, it requeues itself and resumes to the
same tables; its Ray refuses a client without the job's token and stops without touching another Ray on
the node; requests Slurm refuses end in one line, exit 2, nothing written."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import OneNodeSlurm, TwoNodeSlurm, available, netns_available

from raysweep.api import open as open_run
from raysweep.cluster.slurm import expand_nodelist

RUN = ["digits_mlp", "--replicates", "2", "--set", "train.epochs=10", "--no-report"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = available()
    if why:
        (pytest.fail if os.environ.get("RAYSWEEP_TEST_FULL") else pytest.skip)(f"no Slurm here: {why}")
    cluster = OneNodeSlurm(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run, local: what every Slurm run's tables must equal."""
    storage = tmp_path_factory.mktemp("local")
    r = subprocess.run([sys.executable, "-m", "raysweep", "run", *RUN, "--storage", str(storage)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return storage


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    why = available() or netns_available()
    if why:
        pytest.skip(f"no two-node Slurm here: {why}")
    cluster = TwoNodeSlurm(tmp_path_factory.mktemp("slurm2"))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


def submit(slurm, storage, *extra) -> tuple[str, Path]:
    r = slurm.run(sys.executable, "-m", "raysweep", "slurm", *RUN, "--storage", str(storage), *extra, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = re.search(r"submitted Slurm job (\d+)", r.stdout).group(1)
    log = Path(re.search(r"log +(\S+)", r.stdout).group(1))
    return job_id, log


def wait_for(check, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError(what)


def same_tables(storage, reference) -> None:
    run, ref = open_run(RUN[0], str(storage), ["train.epochs=10"], 2), open_run(RUN[0], str(reference),
                                                                                 ["train.epochs=10"], 2)
    assert run.table("checkpoints")["sha256"].to_list() == ref.table("checkpoints")["sha256"].to_list()
    points = run.table("points")
    assert points["node_id"].n_unique() >= 1 and points.height == ref.table("points").height
    assert points.drop("node_id").equals(ref.table("points").drop("node_id"))  # node_id: which Ray node computed it
    for name in ("curves", "barriers"):
        assert run.table(name).equals(ref.table(name)), name


def test_slurm_run_completes_with_the_tables_of_a_local_run(slurm, reference, tmp_path):
    job_id, log = submit(slurm, tmp_path / "runs")
    info = slurm.wait_job(job_id)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "0", text
    assert "Ray is up at" in text and "done: trained 2 replicate(s)" in text
    same_tables(tmp_path / "runs", reference)
    assert not Path(f"/tmp/rs-{job_id}").exists()  # the node-local temp folder went with the job's Ray


def test_usr1_while_the_head_starts_then_term_mid_run_each_stop_requeue_and_resume(slurm, reference, tmp_path):
    """USR1 (the time limit near) while the script waits for the head (here 20 s late) is acted on at once, not
    after the wait, and requeues the job; TERM (a preemption) mid-training does the same, the driver stopping as
    on Ctrl-C; the job resumes to the same tables as a local run."""
    storage = tmp_path / "runs"
    job_id, log = submit(slurm, storage, "--setup", "export RAYSWEEP_SLURM_HEAD_DELAY=20")
    wait_for(lambda: log.exists() and "start 0" in log.read_text(), "the job's start", timeout=120)
    time.sleep(2)
    sent = time.time()
    assert slurm.run("scancel", "--signal=USR1", "--batch", job_id).returncode == 0
    wait_for(lambda: "USR1 at" in log.read_text(), "the USR1 line", timeout=30)
    acted = time.time() - sent
    assert acted < 10, f"USR1 acted on after {acted:.0f} s (the head's delay is 20 s)"
    wait_for(lambda: f"raysweep: job {job_id} start 1" in log.read_text(), "the requeued start", timeout=120)
    wait_for(lambda: list(storage.rglob("replicate_*/step_*.json")), "a first checkpoint", timeout=300)
    assert slurm.run("scancel", "--signal=TERM", "--batch", job_id).returncode == 0  # a preemption's signal
    info = slurm.wait_job(job_id, timeout=600)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "2", text
    first, second, third = text.split(f"raysweep: job {job_id} start ")[1:]
    assert "USR1 at" in first and "requeueing job" in first and "Ray is up" not in first
    assert "TERM at" in second and "stopped by SIGUSR1" in second and "done:" not in second
    assert "done:" in third
    same_tables(storage, reference)


def test_the_jobs_ray_wants_its_token_and_stops_alone(slurm, ray_session, tmp_path):
    """A client without the job's token (or with another) is refused; with it, it joins. scancel ends the
    job's Ray only: the test session's own Ray on this node still runs."""
    import ray

    from raysweep.connect import init_ray

    init_ray(num_cpus=2)  # another Ray on this node (the session's, or one of its own): it must outlive the job's
    job_id, log = submit(slurm, tmp_path / "runs", "--set", "train.epochs=400")
    address = wait_for(lambda: re.findall(r"Ray is up at (\S+)", log.read_text() if log.exists() else ""),
                       "Ray in the job")[0]
    token = Path(f"/tmp/rs-{job_id}/token")
    assert token.stat().st_mode & 0o777 == 0o600
    code = f"import ray; ray.init(address={address!r}); print(len(ray.nodes()))"
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    clients = {name: subprocess.Popen([sys.executable, "-c", code], env={**base, **env}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
               for name, env in {"none": {"RAY_AUTH_MODE": "disabled"},
                                 "wrong": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
                                 "right": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}}.items()}
    out = {name: (p.wait(120), p.stdout.read()) for name, p in clients.items()}
    assert out["right"][0] == 0 and out["right"][1].strip().endswith("1"), out["right"]
    for name in ("none", "wrong"):
        assert out[name][0] != 0 and re.search(r"(?i)auth|token|unauthenticated", out[name][1]), out[name]
    assert slurm.run("scancel", job_id).returncode == 0
    slurm.wait_job(job_id, timeout=120)
    wait_for(lambda: not Path(f"/tmp/rs-{job_id}").exists() or None, "the job's Ray to stop", 60)
    assert ray.is_initialized() and ray.get(ray.remote(lambda: 7).remote()) == 7


# more GPUs than exist: a node with fewer says "not available", this node without any gres says "Invalid generic"
@pytest.mark.parametrize("extra, said", [(["--partition", "nope"], "invalid partition"),
                                         (["--gpus-per-node", "4"], "not available|Invalid generic resource")])
def test_a_request_slurm_refuses_is_one_line_exit_2_nothing_written(slurm, tmp_path, extra, said):
    storage = tmp_path / "runs"
    r = slurm.run(sys.executable, "-m", "raysweep", "slurm", *RUN, "--storage", str(storage), *extra, timeout=120)
    assert r.returncode == 2 and re.search(said, r.stderr) and "Slurm refused the job" in r.stderr
    assert len((r.stdout + r.stderr).strip().splitlines()) == 1 and not storage.exists()


def test_node_lists_agree_with_scontrol(slurm):
    for text in ("gpu[01-04,07]", "a[8-10],b1", "r[1-2]n[3,5]", "n[1-3,5],gpu[007-008]"):
        want = slurm.run("scontrol", "show", "hostnames", text, check=True).stdout.split()
        assert expand_nodelist(text) == want


def test_two_nodes_at_distinct_addresses_share_the_work_and_the_tables(two_nodes, reference, tmp_path):
    """Two Slurm nodes (rsn1 here, rsn2 in a network namespace of the test's): Ray starts on both at the
    address of --ip-interface, each Ray node named as Slurm names it; the head waits for both; work items run
    on both; the tables equal a local run's; each node's Ray logs are kept and its temp folder goes."""
    storage = tmp_path / "runs"
    # the head starts 40 s late (longer than a worker waits for an unreachable GCS): the workers start only once it
    # answers, as Ray's Slurm template and KubeRay do
    job_id, log = submit(two_nodes, storage, "--nodes", "2", "--shared-storage", "--ip-interface", two_nodes.interface,
                         "--setup", "export RAYSWEEP_SLURM_HEAD_DELAY=40")
    info = two_nodes.wait_job(job_id, timeout=600)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["NodeList"] == "rsn[1-2]", text
    assert "starts in 40 s" in (log.parent / f"ray-{job_id}-rsn1.log").read_text()
    assert text.index("the head answers at") < text.index("Ray is up at")
    net = re.escape(two_nodes.subnet)
    up = rf"Ray is up at {net}\.1:\d+ on 2 node\(s\): rsn1 \({two_nodes.cpus} CPU, 0 GPU\), rsn2 \("
    assert re.search(up, text), text
    worker = (log.parent / f"ray-{job_id}-rsn2.log").read_text()
    assert re.search(rf"worker rsn2 \({net}\.2\): .*--address={net}\.1:", worker), worker
    assert (log.parent / f"ray-{job_id}-rsn2").is_dir() and (log.parent / f"ray-{job_id}-rsn1").is_dir()
    assert len(nodes_that_worked(storage)) == 2 and not Path(f"/tmp/rs-{job_id}").exists()
    same_tables(storage, reference)


def nodes_that_worked(storage) -> set[str]:
    """The Ray nodes that trained a replicate or evaluated a point (their provenance's node ids). Ray puts
    the two 1-CPU trials on different 2-CPU nodes (its hybrid policy spreads past half a node's use)."""
    run = open_run(RUN[0], str(storage), ["train.epochs=10"], 2)
    return set(run.table("checkpoints")["node_id"]) | set(run.table("points")["node_id"])
