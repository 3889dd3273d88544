"""An autoscaling Ray cluster on this machine, started the way `ray up` starts one: Ray's fake
multi-node provider (`provider: type: fake_multinode`) behind `RAY_FAKE_CLUSTER=1 ray start --head
--autoscaling-config=FILE`. Worker nodes are real raylets the autoscaler launches on demand; their GPUs
are fake (a resource count: torch sees no CUDA). Every process it starts is stopped by pid."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(gcs_port: int, max_gpu_workers: int = 2) -> dict:
    """Shaped like cluster.yaml: a head with 0 CPUs, GPU workers {CPU: 2, GPU: 1} from 0 to 2."""
    return {
        "cluster_name": "raysweep-fake", "max_workers": max_gpu_workers, "upscaling_speed": 2.0,
        "idle_timeout_minutes": 5,
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{gcs_port}",
                     "disable_launch_config_check": True, "disable_node_updaters": True,
                     "use_node_id_as_ip": True, "launch_multiple": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 0,
                           "max_workers": max_gpu_workers},
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


class FakeCluster:
    def __init__(self, workdir: Path, env_drop=("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")):
        self.workdir = Path(workdir)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        # every process of this cluster names its temp dir: how we find them. Short, for Unix sockets.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rsfc-", dir="/tmp"))
        self.config_file = self.workdir / "autoscaler.yaml"
        self.env = {k: v for k, v in os.environ.items() if k not in env_drop}
        self.env.update(RAY_FAKE_CLUSTER="1", RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        self.bin = Path(sys.executable).parent

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> "FakeCluster":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(config(self.gcs_port)))
        cmd = [str(self.bin / "ray"), "start", "--head", "--port", str(self.gcs_port),
               "--node-ip-address", "127.0.0.1", "--num-cpus", "0", "--num-gpus", "0",
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
               "--autoscaling-config", str(self.config_file), "--temp-dir", str(self.temp_dir)]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if r.returncode:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        try:
            self.wait_for_job_agent()
        except Exception:
            self.stop()
            raise
        return self

    def wait_for_job_agent(self, timeout: float = 180) -> None:
        """Until the head's dashboard agent (which runs submitted jobs) has published its address in the GCS
        and the job server answers, as Ray's own job tests wait (`wait_for_condition` on the agent): a job
        submitted earlier is refused with "No available agent" once the job head's own 10 s wait runs out,
        which a busy 2-core machine exceeds."""
        import time
        import urllib.request

        from ray._raylet import GcsClient

        gcs = GcsClient(address=f"127.0.0.1:{self.gcs_port}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                agents = gcs.internal_kv_keys(b"DASHBOARD_AGENT_ADDR_NODE_ID_PREFIX:", b"dashboard")
                if agents and urllib.request.urlopen(f"{self.dashboard}/api/jobs/", timeout=5).status == 200:
                    return
            except Exception:  # the GCS or the dashboard not up yet
                pass
            time.sleep(1)
        raise RuntimeError(f"the head's job agent did not register within {timeout} s")

    def job_submit(self, entrypoint: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
        """`ray job submit` to the head's job server; waits for the job, returns its output. A head whose
        job agent has not registered yet (a busy machine) refuses the submission with "No available
        agent", and Ray says to try again: so do we, for up to a minute."""
        import time

        cmd = [str(self.bin / "ray"), "job", "submit", "--address", self.dashboard, "--", *entrypoint]
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
            if r.returncode == 0 or "No available agent" not in r.stdout + r.stderr or time.monotonic() > deadline:
                return r
            time.sleep(2)

    def pids(self) -> list[int]:
        """Processes of this cluster: those whose command lines name its temp dir or its GCS port, and their
        descendants (a worker's command line may name neither)."""
        import psutil

        marks = (str(self.temp_dir), f"127.0.0.1:{self.gcs_port}", f"--port {self.gcs_port}")
        out = set()
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(p.info["cmdline"] or [])
            if p.info["pid"] != os.getpid() and any(m in cmdline for m in marks):
                out.add(p.info["pid"])
                try:
                    out |= {c.pid for c in p.children(recursive=True)}
                except psutil.Error:
                    pass
        return sorted(out - {os.getpid()})

    def stop(self) -> None:
        """SIGTERM to every process of the cluster, SIGKILL to those still there 10 s later; again while any
        is found (the autoscaler may have launched a node meanwhile)."""
        import psutil

        for _ in range(3):
            procs = []
            for pid in self.pids():
                try:
                    proc = psutil.Process(pid)
                    proc.send_signal(signal.SIGTERM)
                    procs.append(proc)
                except psutil.Error:
                    pass
            if not procs:
                break
            _, alive = psutil.wait_procs(procs, timeout=10)
            for p in alive:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
