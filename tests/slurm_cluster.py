"""A real one-node Slurm for the tests: munged with its own key, slurmctld and slurmd (Debian's slurm-wlm
22.05) on a localhost slurm.conf in a temp folder, on ports of their own; stopped by pid afterwards.

Two settings differ from a site's, each to keep the tests short: `cred_expire=5` (a requeued job may start
again after ~20 s instead of Slurm's default 121 s) and `KillWait=10`.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("sbatch", "slurmctld", "slurmd", "munged", "scontrol", "squeue", "scancel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str:
    """"" when a Slurm can be started here, else why not (after trying to install it, as root)."""
    if os.geteuid() != 0:
        return "slurmd and slurmctld need root"
    if not all(shutil.which(b) for b in BINARIES):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], capture_output=True, env=env)
    missing = [b for b in BINARIES if not shutil.which(b)]
    return f"{', '.join(missing)} not installed (apt-get install {' '.join(PACKAGES)})" if missing else ""


class OneNodeSlurm:
    """munged, slurmctld and slurmd in the foreground, children of this process, with everything in `folder`."""

    def __init__(self, folder: Path, cpus: int | None = None):
        self.folder = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 2
        self.procs: list[subprocess.Popen] = []
        self.conf = self.folder / "slurm.conf"
        self.controller = "127.0.0.1"  # the address slurmctld is reached at

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args, check=False, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check, **kw)

    def start(self) -> "OneNodeSlurm":
        f = self.folder
        for d in ("state", "spool", "log", "munge"):
            (f / d).mkdir(parents=True, exist_ok=True)
        (f / "munge").chmod(0o700)
        key = f / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        # munged wants its socket's folder open to all (x) and its key's closed: two folders; a short path
        self.sock_dir = Path(tempfile.mkdtemp(prefix="rsmunge-"))
        self.sock_dir.chmod(0o755)
        sock = self.sock_dir / "socket"
        self._spawn(["munged", "-F", f"--key-file={key}", f"--socket={sock}", f"--pid-file={f}/munge/pid",
                     f"--log-file={f}/log/munged.log", f"--seed-file={f}/munge/seed"], "munged")
        self._wait(lambda: sock.exists(), "munged's socket")
        self.conf.write_text(self._conf(sock))
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._start_nodes()
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%T").stdout.split() == ["idle"], "the nodes to be idle", 60)
        return self

    @staticmethod
    def _memory(share: float = 0.8) -> int:
        return min(8000, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * share))

    def _nodes(self) -> str:
        """slurm.conf's node and partition lines."""
        return (f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self._memory()} State=UNKNOWN\n"
                f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP\n")

    def _start_nodes(self) -> None:
        self._spawn(["slurmd", "-D", "-f", str(self.conf), "-N", self.host], "slurmd")

    def _conf(self, sock: Path) -> str:
        f = self.folder
        return f"""ClusterName=rstest
SlurmctldHost={self.host}({self.controller})
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={sock},cred_expire=5
CredType=cred/munge
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/spool/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=10
{self._nodes()}"""

    def _spawn(self, argv: list[str], name: str) -> None:
        log = open(self.folder / "log" / f"{name}.stdout", "w")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def _wait(self, ok, what: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while not ok():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.time() > deadline:
                logs = "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in (self.folder / "log").glob("*"))
                raise RuntimeError(f"Slurm did not come up ({what}; ended: {dead})\n{logs}")
            time.sleep(0.3)

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, ...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def wait_job(self, job_id: str, timeout: float = 300) -> dict[str, str]:
        """Wait until the job left the queue (completed, failed or cancelled); its last record."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return info
            time.sleep(1)
        raise TimeoutError(f"Slurm job {job_id} still {self.job(job_id).get('JobState')} after {timeout} s")

    def stop(self) -> None:
        """Cancel what is queued, wait for it to leave, then end the daemons (TERM, then KILL) by pid."""
        self.run("scancel", "--full", "-u", "root")
        deadline = time.time() + 30
        while time.time() < deadline and self.run("squeue", "-h").stdout.strip():
            time.sleep(0.5)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(self.sock_dir, ignore_errors=True)


def netns_available() -> str:
    """"" when this process may make network namespaces and veth pairs (root, CAP_NET_ADMIN), else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [b for b in ("ip", "nsenter", "unshare", "mount") if not shutil.which(b)]
    if missing:
        return f"{', '.join(missing)} not installed (iproute2, util-linux, mount)"
    probe = f"rsprobe{os.getpid() % 100000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode:
        return f"cannot make a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


class TwoNodeSlurm(OneNodeSlurm):
    """Two Slurm nodes with distinct addresses on this machine, the traffic between them on a veth pair that
    stays on it: rsn1 in this network namespace at 10.213.N.1, rsn2 in a network namespace the test makes at
    10.213.N.2. Both ends of the pair have the same name (`self.interface`), so `--ip-interface` names the same
    interface on either node, as on a cluster. Each node has its own slurmd; rsn2's runs in a mount namespace
    of its own in which its spool folder (pid file, step sockets) is its own. The filesystem is shared, as a
    cluster's shared storage is. Everything made is removed by `stop`."""

    names = ("rsn1", "rsn2")

    def __init__(self, folder: Path, cpus: int | None = None):
        super().__init__(folder, cpus)
        tag = os.getpid() % 100000
        self.netns, self.interface, self.subnet = f"rsns{tag}", f"rsv{tag}", f"10.213.{tag % 250}"
        self.controller = f"{self.subnet}.1"

    def _ip(self, *args: str, inside: bool = False) -> None:
        argv = (["ip", "netns", "exec", self.netns, "ip"] if inside else ["ip"]) + list(args)
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")

    def start(self) -> "TwoNodeSlurm":
        self._ip("netns", "add", self.netns)
        self._ip("link", "add", self.interface, "type", "veth", "peer", "name", self.interface + "p")
        self._ip("link", "set", self.interface + "p", "netns", self.netns)
        self._ip("link", "set", self.interface + "p", "name", self.interface, inside=True)
        self._ip("addr", "add", f"{self.subnet}.1/24", "dev", self.interface)
        self._ip("link", "set", self.interface, "up")
        self._ip("addr", "add", f"{self.subnet}.2/24", "dev", self.interface, inside=True)
        self._ip("link", "set", self.interface, "up", inside=True)
        self._ip("link", "set", "lo", "up", inside=True)
        self._ip("route", "add", "default", "via", f"{self.subnet}.1", inside=True)
        return super().start()

    def _nodes(self) -> str:
        lines = [f"NodeName={n} NodeAddr={self.subnet}.{i} CPUs={self.cpus} RealMemory={self._memory(0.4)} "
                 f"State=UNKNOWN" for i, n in enumerate(self.names, 1)]
        return "\n".join(lines) + "\nPartitionName=debug Nodes=rsn[1-2] Default=YES MaxTime=INFINITE State=UP\n"

    def _start_nodes(self) -> None:
        self._spawn(["slurmd", "-D", "-f", str(self.conf), "-N", self.names[0]], "slurmd-rsn1")
        own = self.folder / "spool-rsn2"
        own.mkdir(exist_ok=True)
        inside = f"mount --bind {own} {self.folder / 'spool'} && exec slurmd -D -f {self.conf} -N {self.names[1]}"
        # nsenter, not `ip netns exec`: that one mounts a /sys of the namespace's own, without the cgroup
        # filesystem slurmd wants
        self._spawn(["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount", "--propagation", "private",
                     "sh", "-c", inside], "slurmd-rsn2")

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            subprocess.run(["ip", "link", "del", self.interface], capture_output=True)  # both ends go
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
