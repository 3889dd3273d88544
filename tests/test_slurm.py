"""`raysweep slurm` without a Slurm: node lists, ports from job ids, the allocation read back from Slurm's
environment, the sbatch script (bash syntax, directives, the run command's quoting) and refusals made
before anything is submitted. tests/test_slurm_cluster.py runs the script on a real Slurm."""
import os
import socket
import subprocess

import pytest
from typer.testing import CliRunner

from raysweep.cli import app
from raysweep.cluster.slurm import (
    PORT_BLOCK,
    RAY_PORTS,
    SlurmRequest,
    allocation,
    expand_nodelist,
    job_block,
    job_ports,
    refusal,
)
from raysweep.cluster.slurm_node import NodeError, node_ip, ray_start_argv
from raysweep.cluster.slurm_script import render
from raysweep.errors import SpecError

runner = CliRunner()


@pytest.mark.parametrize("text, names", [
    ("gpu[01-04,07]", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"]),
    ("node5", ["node5"]),
    ("a[8-10],b1", ["a8", "a9", "a10", "b1"]),
    ("c[098-101]-ib", ["c098-ib", "c099-ib", "c100-ib", "c101-ib"]),
    ("r[1-2]n[3,5]", ["r1n3", "r1n5", "r2n3", "r2n5"]),
    ("x[1],y[2-3],z", ["x1", "y2", "y3", "z"]),
])
def test_node_lists_expand_as_scontrol_does(text, names):
    assert expand_nodelist(text) == names


@pytest.mark.parametrize("bad", ["gpu[01-04", "gpu01]", "gpu[a-c]", "gpu[5-2]"])
def test_a_broken_node_list_is_named(bad):
    with pytest.raises(SpecError, match="node list"):
        expand_nodelist(bad)


def test_ports_from_job_ids_keep_neighbouring_jobs_apart():
    every = lambda p: set(p[n] for n in RAY_PORTS) | set(range(p["min-worker-port"], p["max-worker-port"] + 1))  # noqa
    first = job_ports(4711)
    assert job_ports(4711) == first  # every node of the job derives the same ports
    assert len(every(first)) == len(RAY_PORTS) + first["max-worker-port"] - first["min-worker-port"] + 1
    for other in range(4712, 4711 + 48):  # 47 neighbours: no port shared, none reused by the same job
        assert not every(first) & every(job_ports(other))
    assert job_ports(4711 + 48) == first  # the blocks repeat after 48 ids
    for job_id in range(48):
        p = job_ports(job_id)
        assert 1024 < min(every(p)) and max(every(p)) < 32768  # below Linux's ephemeral range
        assert max(p[n] for n in RAY_PORTS) < p["min-worker-port"]
        assert p["max-worker-port"] - p["port"] == PORT_BLOCK - 1


def test_a_node_whose_block_is_taken_moves_to_the_next_free_one(monkeypatch):
    """The blocks repeat every 48 job ids, and any program may hold a port: the node's own block when free, else
    the next one; the head's port names its block for the workers."""
    import socket as socket_module

    from raysweep.cluster import slurm_node
    from raysweep.cluster.slurm import block_of_port, block_ports

    job = 4711
    own = job_block(job)
    assert slurm_node.free_block(job, head=True) == own or slurm_node.busy_ports(own, head=True)
    with socket_module.socket() as holder:  # another program holds the GCS port of the job's block
        holder.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", block_ports(own)["port"]))
        holder.listen()
        moved = slurm_node.free_block(job, head=True)
        assert moved != own and block_of_port(block_ports(moved)["port"]) == moved
        assert slurm_node.free_block(job, head=False) == own  # a worker does not use the GCS port
    monkeypatch.setattr(slurm_node, "busy_ports", lambda block, head: ["3000 (port)"])
    with pytest.raises(NodeError, match="every one of the 48 blocks"):
        slurm_node.free_block(job, head=True)


@pytest.mark.parametrize("env, want", [
    ({"SLURM_CPUS_PER_TASK": "16", "SLURM_GPUS_ON_NODE": "8", "SLURM_MEM_PER_NODE": "1024"},
     {"cpus": 16, "gpus": 8, "memory": 1024 << 20}),
    # --gres=gpu:a100:4 sets SLURM_GPUS_ON_NODE too; only --gpus-per-task sets SLURM_GPUS_PER_TASK
    ({"SLURM_CPUS_ON_NODE": "32", "SLURM_GPUS_PER_NODE": "a100:4"}, {"cpus": 32, "gpus": 4, "memory": None}),
    ({"SLURM_CPUS_PER_TASK": "4", "SLURM_JOB_GPUS": "0,1", "SLURM_MEM_PER_CPU": "100"},
     {"cpus": 4, "gpus": 2, "memory": 400 << 20}),
    ({"SLURM_CPUS_PER_TASK": "2"}, {"cpus": 2, "gpus": 0, "memory": None}),
])
def test_the_allocation_is_read_back_from_slurms_environment(env, want):
    assert allocation(env) == want


def test_without_slurm_variables_ray_gets_this_process_cpus():
    assert allocation({})["cpus"] == len(os.sched_getaffinity(0))


def test_gpus_asked_as_gpus_per_node_or_gres():
    opts = lambda r: [o for o, _ in r.directives("log")]  # noqa: E731
    assert "--gpus-per-node=8" in opts(SlurmRequest(gpus_per_node=8))
    assert "--gres=gpu:8" in opts(SlurmRequest(gpus_per_node=8, gres=True))
    assert not any("gpu" in o for o in opts(SlurmRequest()))
    assert "--exclusive" in opts(SlurmRequest()) and "--exclusive" not in opts(SlurmRequest(shared_nodes=True))
    assert "--signal=B:USR1@120" in opts(SlurmRequest(signal_lead=120))


@pytest.mark.parametrize("field, value", [("time", "2 days"), ("mem", "lots"), ("nodes", 0), ("max_requeues", -1)])
def test_requests_slurm_would_misread_are_refused(field, value):
    with pytest.raises(SpecError):
        SlurmRequest(**{field: value}).check()


def test_the_script_is_bash_and_carries_the_run_command_as_given(tmp_path):
    argv = ["run", "digits_mlp", "--storage", "s3://b/p?scheme=http", "--set", "train.lr=0.05",
            "--set", "data.root=/data/with space/it's"]
    request = SlurmRequest(nodes=4, gpus_per_node=8, time="1-00:00:00", sbatch_args=("--constraint=a100",),
                           setup=("module load cuda/12.4",), max_requeues=2)
    text = render(request, argv, python="/opt/venv/bin/python", logs=str(tmp_path), script="s.sbatch", run_id="j/h")
    script = tmp_path / "s.sbatch"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    directives = [line.split()[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    assert directives[:3] == ["--job-name=raysweep", "--nodes=4", "--ntasks-per-node=1"]
    assert {"--gpus-per-node=8", "--time=1-00:00:00", "--exclusive", "--requeue", "--constraint=a100",
            f"--output={tmp_path}/slurm-%j.out"} <= set(directives)
    # the RUN array, read by bash itself, is the argv given: quoting survives spaces and quotes
    got = subprocess.run(["bash", "-c", f"eval \"$(grep -E '^export RAYSWEEP_' {script})\"; "
                                        "eval \"RUN=($RAYSWEEP_RUN)\"; "
                                        "printf '%s\\n' \"$RAYSWEEP_PY\" \"$RAYSWEEP_MAX_REQUEUES\" \"${RUN[@]}\""],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert got == ["/opt/venv/bin/python", "2", *argv]
    assert text.index("module load cuda/12.4") < text.index("srun")  # the setup comes first
    assert "ray stop" not in text.replace("`ray stop`", "")  # never a node-wide stop


def test_ray_start_takes_the_allocation_and_the_jobs_ports():
    alloc = {"cpus": 16, "gpus": 8, "memory": 100 << 30}
    ports = job_ports(1234)
    head = ray_start_argv(head=True, ip="10.0.0.1", address=None, block=job_block(1234), tmp="/tmp/rs-1234",
                          host="gpu01", alloc=alloc, shm_free=20 << 30)
    worker = ray_start_argv(head=False, ip="10.0.0.2", address="10.0.0.1:7", block=job_block(1234),
                            tmp="/tmp/rs-1234", host="gpu02", alloc=alloc, shm_free=None)
    flags = lambda argv: dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)  # noqa: E731
    h, w = flags(head), flags(worker)
    assert (h["num-cpus"], h["num-gpus"], h["node-ip-address"], h["node-name"]) == ("16", "8", "10.0.0.1", "gpu01")
    assert h["port"] == str(ports["port"]) and h["dashboard-host"] == "127.0.0.1" and "--head" in head
    assert int(h["object-store-memory"]) == int(20 * 0.9 * 2**30)  # capped by /dev/shm's free space
    assert int(h["object-store-memory"]) + int(h["memory"]) == 100 << 30
    assert int(w["object-store-memory"]) == int(0.3 * (100 << 30))
    assert "port" not in w and "dashboard-port" not in w and "ray-client-server-port" not in w
    assert w["address"] == "10.0.0.1:7" and "--head" not in worker
    for name in ("node-manager-port", "object-manager-port", "min-worker-port", "max-worker-port"):
        assert h[name] == w[name] == str(ports[name])


def test_node_ip_of_an_interface_and_of_a_missing_one():
    assert node_ip("lo") == "127.0.0.1"
    with pytest.raises(NodeError, match="lo"):  # the message lists the interfaces there are
        node_ip("no-such-nic0")
    ip = node_ip(None, {"SLURM_JOB_NUM_NODES": "1"})
    socket.inet_aton(ip)  # an IPv4 address, whatever this machine's name resolves to


def test_refusals_name_what_was_asked_and_the_fix():
    r = SlurmRequest(nodes=2, gpus_per_node=8, partition="nope")
    text = refusal("sbatch: error: invalid partition specified: nope\nallocation failure: Invalid partition name", r)
    assert "2 node(s) × 8 GPU(s)" in text and "invalid partition specified: nope" in text and "--partition" in text
    text = refusal("allocation failure: Requested node configuration is not available", SlurmRequest(gpus_per_node=9))
    assert "--gpus-per-node" in text and "sinfo" in text and "nothing was submitted" in text


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_dry_run_prints_the_script_and_writes_nothing(tmp_path):
    storage = tmp_path / "runs"
    r = invoke("slurm", "digits_mlp", "--storage", storage, "--gpus-per-node", 2, "--time", "4:00:00", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "#SBATCH --gpus-per-node=2" in r.output and "-m raysweep" in r.output
    assert "export RAYSWEEP_RUN='run digits_mlp --storage " in r.output and not storage.exists()


def test_a_local_folder_across_nodes_is_refused_before_submitting(tmp_path):
    storage = tmp_path / "runs"
    r = invoke("slurm", "digits_mlp", "--storage", storage, "--nodes", 2, "--dry-run")
    assert r.exit_code == 2 and "--shared-storage" in r.output and "s3://" in r.output and not storage.exists()
    r = invoke("slurm", "digits_mlp", "--storage", storage, "--nodes", 2, "--shared-storage", "--dry-run")
    assert r.exit_code == 0 and "--shared-storage" in r.output.split("export RAYSWEEP_RUN=")[1].splitlines()[0]


def test_a_gpu_job_without_gpus_and_a_machine_without_sbatch(tmp_path):
    r = invoke("slurm", "imagenet_resnet50", "--storage", tmp_path / "s", "--dry-run")
    assert r.exit_code == 2 and "--gpus-per-node" in r.output
    r = invoke("slurm", "digits_mlp", "--storage", tmp_path / "s", env={"PATH": str(tmp_path)})
    assert r.exit_code == 2 and "sbatch is not on PATH" in r.output and not (tmp_path / "s").exists()


def test_the_written_script_passes_shellcheck(tmp_path):
    """The body (raysweep/cluster/raysweep.sbatch) and what `raysweep slurm` puts in front of it, linted together
    (CI installs shellcheck; elsewhere the test says it is missing)."""
    from conftest import need

    need("shellcheck", "shellcheck")
    request = SlurmRequest(nodes=2, gpus_per_node=1, setup=("module load cuda/12.4",), ip_interface="ib0")
    text = render(request, ["run", "a job.toml", "--set", "x='y'"], python="/v/bin/python", logs="/l o g s",
                  script="s.sbatch", run_id="j/h")
    (tmp_path / "s.sbatch").write_text(text)
    r = subprocess.run(["shellcheck", "-S", "warning", str(tmp_path / "s.sbatch")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_a_controller_that_does_not_answer_is_named(tmp_path, monkeypatch):
    """sbatch that hangs (a slurmctld down): one line naming the command, exit 2, nothing written."""
    from raysweep import cli_slurm

    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cli_slurm, "SLURM_TIMEOUT", 1)
    r = invoke("slurm", "digits_mlp", "--storage", tmp_path / "s", env={"PATH": f"{fake.parent}:/usr/bin:/bin"})
    assert r.exit_code == 2 and "`sbatch --test-only` did not answer within 1 s" in r.output, r.output
    assert not (tmp_path / "s" / "digits_mlp").exists() or not list((tmp_path / "s").rglob("*.sbatch"))


def test_a_dry_run_never_contacts_the_store(s3_server):
    """The README's line with a bucket this machine cannot reach: the script is printed, and said unchecked."""
    r = invoke("slurm", "imagenet_resnet50", "--nodes", 4, "--gpus-per-node", 8, "--storage",
               "s3://no-such-bucket-here/sweeps", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "#SBATCH --nodes=4" in r.stdout and "was not contacted" in r.stderr
    r = invoke("slurm", "imagenet_resnet50", "--nodes", 4, "--gpus-per-node", 8, "--storage",
               "s3://no-such-bucket-here/sweeps", env={"PATH": "/usr/bin:/bin"})
    assert r.exit_code == 2 and "does not exist" in r.output  # a real submission checks it first
