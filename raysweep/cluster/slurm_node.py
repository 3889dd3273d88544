"""The steps of the sbatch script that need care, run inside the allocation on each node:

    python -m raysweep.cluster.slurm_node hosts                 # $SLURM_JOB_NODELIST, one name a line
    python -m raysweep.cluster.slurm_node ip [--interface ib0]  # this node's address for Ray
    python -m raysweep.cluster.slurm_node port                  # the head's port: its block's, free here
    python -m raysweep.cluster.slurm_node wait-head --address IP:PORT --timeout S PID   # the head's GCS answers
    python -m raysweep.cluster.slurm_node token                 # a fresh secret for Ray's token authentication
    python -m raysweep.cluster.slurm_node start --head --ip IP  # `ray start --block` with the allocation's share
    python -m raysweep.cluster.slurm_node start --address IP:PORT
    python -m raysweep.cluster.slurm_node ready --address IP:PORT --timeout S --logs DIR host=pid ...

A failure prints one paragraph naming the node and the fix, and exits 1.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from raysweep.cluster.slurm import (
    HEAD_ONLY_PORTS,
    PORT_BLOCKS,
    RAY_PORTS,
    allocation,
    block_of_port,
    block_ports,
    expand_nodelist,
    job_block,
)


class NodeError(RuntimeError):
    """A step that cannot go on; its message names the node and the fix."""


def _interface_ip(name: str) -> str:
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:  # SIOCGIFADDR: the interface's IPv4 address
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
        except OSError:
            names = ", ".join(n for _, n in socket.if_nameindex())
            raise NodeError(f"{socket.gethostname()} has no IPv4 address on interface {name!r} (its interfaces: "
                            f"{names}); give one of them to --ip-interface.") from None
    return socket.inet_ntoa(packed[20:24])


def node_ip(interface: str | None = None, env=os.environ) -> str:
    """The address other nodes reach this one at: the interface's when given; else what the host name
    resolves to, unless that is loopback (Debian maps the name to 127.0.1.1), in which case the address
    this node reaches the Slurm controller from; loopback itself only for a one-node job."""
    if interface:
        return _interface_ip(interface)
    host = socket.gethostname()
    try:
        found = sorted({ai[4][0] for ai in socket.getaddrinfo(host, None, socket.AF_INET)})
    except OSError:
        found = []
    routable = [a for a in found if not a.startswith("127.")]
    if routable:
        return routable[0]
    ctld = (env.get("SLURM_WORKING_CLUSTER") or "").split(":")  # name:controller address:port:...
    if len(ctld) > 1 and ctld[1] and not ctld[1].startswith("127."):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((ctld[1], 9))  # no packet is sent: the kernel only picks the route
            return s.getsockname()[0]
    if int(env.get("SLURM_JOB_NUM_NODES", "1")) > 1:
        raise NodeError(f"{host}'s name resolves only to loopback and no route to the controller tells its network "
                        f"address; name the interface the nodes share with --ip-interface (e.g. eth0 or ib0).")
    return "127.0.0.1"


def _ray() -> str:
    """The `ray` command of this Python's environment (the sbatch script names the Python, not a PATH)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


def ray_start_argv(*, head: bool, ip: str, address: str | None, block: int, tmp: str, host: str,
                   alloc: dict, shm_free: int | None = None) -> list[str]:
    """`ray start --block` for this node: the allocation's CPUs/GPUs/memory, the ports of its block, its own
    temp folder and name; the head keeps its dashboard on localhost."""
    ports = block_ports(block)
    argv = [_ray(), "start", "--block", "--disable-usage-stats", f"--temp-dir={tmp}", f"--node-ip-address={ip}",
            f"--node-name={host}", f"--num-cpus={alloc['cpus']}", f"--num-gpus={alloc['gpus']}"]
    if alloc.get("memory"):  # the object store lives in /dev/shm, which counts against the job's memory
        store = int(alloc["memory"] * 0.3)
        if shm_free:
            store = min(store, int(shm_free * 0.9))
        argv += [f"--object-store-memory={store}", f"--memory={alloc['memory'] - store}"]
    argv += [f"--{n}={ports[n]}" for n in role_ports(head)]
    argv += [f"--min-worker-port={ports['min-worker-port']}", f"--max-worker-port={ports['max-worker-port']}"]
    if head:
        return argv + ["--head", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
    return argv + [f"--address={address}"]


def role_ports(head: bool) -> list[str]:
    """The named Ray ports a node takes: all of them on the head; a worker neither the GCS port nor the head's own."""
    return [n for n in RAY_PORTS if head or (n not in HEAD_ONLY_PORTS and n != "port")]


def busy_ports(block: int, head: bool) -> list[str]:
    """The block's named ports that another program holds on this node."""
    ports = block_ports(block)
    busy = []
    for name in role_ports(head):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Ray's servers do: TIME_WAIT is no holder
            try:
                s.bind(("0.0.0.0", ports[name]))
            except OSError:
                busy.append(f"{ports[name]} ({name})")
    return busy


def free_block(job_id: int, head: bool) -> int:
    """The job's own block of ports (job_block) when its ports are free on this node, else the next free one
    (another job 48 ids away, or any program, may hold one)."""
    first = job_block(job_id)
    for i in range(PORT_BLOCKS):
        block = (first + i) % PORT_BLOCKS
        if not busy_ports(block, head):
            return block
    raise NodeError(f"on {socket.gethostname()}, every one of the {PORT_BLOCKS} blocks of Ray ports raysweep uses "
                    f"(3000-31799) has a port held by another program: ask for whole nodes (drop --shared-nodes).")


def start(args) -> int:
    """Ray on this node until the step is signalled; then this node's Ray logs are kept and its temp folder goes.
    The Ray node is named as Slurm names the node (`ready` waits for those names; a host name may be longer,
    e.g. fully qualified), and its temp folder is the node's own even where /tmp is shared."""
    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    job_id = int(os.environ["SLURM_JOB_ID"])
    base = Path(os.environ.get("RAYSWEEP_SLURM_TMP") or f"/tmp/rs-{job_id}")
    tmp = base / host
    if args.head:  # the port `node port` chose here is in the address the workers were given
        block = block_of_port(args.port) if args.port else free_block(job_id, head=True)
        busy = busy_ports(block, head=True)
        if busy:
            raise NodeError(f"on {host}, this job's Ray ports {', '.join(busy)} were taken after the job chose them: "
                            f"submit again.")
        delay = float(os.environ.get("RAYSWEEP_SLURM_HEAD_DELAY", "0") or 0)  # tests: a head that starts late
        if delay:
            print(f"raysweep: head {host} starts in {delay:g} s (RAYSWEEP_SLURM_HEAD_DELAY)", flush=True)
            time.sleep(delay)
    else:
        block = free_block(job_id, head=False)
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    # token authentication on; no drain on SIGTERM (Ray waits up to 30 s for Serve proxies, which a run has none of)
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    token = env.pop("RAYSWEEP_RAY_TOKEN", "")
    if token:  # a file only this user reads; Ray's processes read it through RAY_AUTH_TOKEN_PATH
        path = tmp / "token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        env["RAY_AUTH_TOKEN_PATH"] = str(path)
    ip = args.ip or node_ip(args.interface)
    shm = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else None
    argv = ray_start_argv(head=args.head, ip=ip, address=args.address, block=block, tmp=str(tmp), host=host,
                          alloc=allocation(), shm_free=shm)
    print(f"raysweep: {'head' if args.head else 'worker'} {host} ({ip}): {' '.join(argv[1:])}", flush=True)
    proc = subprocess.Popen(argv, env=env)
    stop = lambda signum, frame: proc.send_signal(signal.SIGTERM)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = proc.wait()
    if args.logs:
        _keep_logs(tmp, Path(args.logs) / f"ray-{job_id}-{host}")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.head:  # the driver's copy of the token (the script's): the job's Ray is gone, and with it its use
        (base / "token").unlink(missing_ok=True)
    try:
        base.rmdir()  # the last node out where /tmp is shared; else this node's, now empty
    except OSError:
        pass
    return code if code not in (-signal.SIGTERM, 128 + signal.SIGTERM) else 0


def _keep_logs(tmp: Path, dest: Path, biggest: int = 20 << 20) -> None:
    """Ray's own logs of this node (raylet, GCS, dashboard; not every worker's), copied before the
    node-local temp folder is deleted."""
    logs = tmp / "session_latest" / "logs"
    if not logs.is_dir():
        return
    for f in logs.iterdir():
        if f.is_file() and f.suffix in (".out", ".err", ".log") and not f.name.startswith(("worker-", "python-core")) \
                and f.stat().st_size <= biggest:
            try:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest / f.name)
            except OSError:
                return


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def wait_head(args) -> int:
    """Until the head's GCS accepts connections at --address (polled each second, for --timeout s at most),
    before any worker starts: a worker that cannot reach the GCS gives up on its own. The head's step ending
    first is named with its log."""
    host, _, port = args.address.rpartition(":")
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            os.kill(int(args.pid), 0)
        except ProcessLookupError:
            log = Path(args.logs) / f"ray-{os.environ.get('SLURM_JOB_ID', '')}-{args.host}.log" if args.logs else None
            raise NodeError(f"Ray's head on {args.host} ended before it answered at {args.address}"
                            f"{f': see {log}' if log else ''}{f' — {_tail(log)}' if log and _tail(log) else ''}. "
                            f"Fix what it says and submit again.") from None
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            print(f"raysweep: the head answers at {args.address}; starting the workers", flush=True)
            return 0
        except OSError:
            if time.monotonic() > deadline:
                raise NodeError(f"Ray's head did not answer at {args.address} within {args.timeout} s; see its log "
                                f"in {args.logs or 'the job log'}. A slow shared filesystem may need a longer "
                                f"--ready-timeout.") from None
            time.sleep(1)


def ready(args) -> int:
    """Wait until a Ray node named after every Slurm node is alive; name the ones that are not."""
    steps = dict(s.split("=", 1) for s in args.steps)
    job_id = os.environ.get("SLURM_JOB_ID", "")
    host, _, port = args.address.rpartition(":")
    deadline = time.monotonic() + args.timeout

    def check_steps(joined=()) -> None:
        for name, pid in steps.items():
            if name in joined:
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                log = Path(args.logs) / f"ray-{job_id}-{name}.log" if args.logs else None
                raise NodeError(
                    f"Ray on {name} ended before it joined (its srun step exited){f': see {log}' if log else ''}"
                    f"{f' — {_tail(log)}' if log and _tail(log) else ''}. Fix what it says and submit again."
                )

    while True:  # the head's port first: ray.init would wait on its own, without watching the steps
        check_steps()
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise NodeError(f"Ray's head did not open {args.address} within {args.timeout} s; see its log in "
                                f"{args.logs or 'the job log'}.") from None
            time.sleep(1)
    import logging

    import ray

    ray.init(address=args.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        while True:
            alive = {n.get("NodeName"): n for n in ray.nodes() if n.get("Alive")}
            missing = [name for name in steps if name not in alive]
            if not missing:
                shown = ", ".join(f"{name} ({int(alive[name]['Resources'].get('CPU', 0))} CPU, "
                                  f"{int(alive[name]['Resources'].get('GPU', 0))} GPU)" for name in steps)
                print(f"raysweep: Ray is up at {args.address} on {len(steps)} node(s): {shown}", flush=True)
                return 0
            check_steps(joined=alive)
            if time.monotonic() > deadline:
                raise NodeError(f"after {args.timeout} s, Ray runs on {len(steps) - len(missing)} of {len(steps)} "
                                f"node(s); not joined: {', '.join(missing)}. Their logs: "
                                f"{', '.join(str(Path(args.logs or '.') / f'ray-{job_id}-{m}.log') for m in missing)}. "
                                f"A slow shared filesystem may need a longer --ready-timeout.")
            time.sleep(1)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m raysweep.cluster.slurm_node", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("hosts")
    sub.add_parser("port")
    sub.add_parser("token")
    sub.add_parser("ip").add_argument("--interface", default="")
    s = sub.add_parser("start")
    s.add_argument("--head", action="store_true")
    s.add_argument("--port", type=int, default=0, help="the head's GCS port (`node port`'s answer)")
    s.add_argument("--ip", default="")
    s.add_argument("--address")
    s.add_argument("--interface", default="")
    s.add_argument("--logs", default="", help="a folder for this node's Ray logs when it stops")
    w = sub.add_parser("wait-head")
    w.add_argument("--address", required=True)
    w.add_argument("--timeout", type=int, default=600)
    w.add_argument("--logs", default="")
    w.add_argument("--host", default="the head")
    w.add_argument("pid", help="the head's srun step")
    r = sub.add_parser("ready")
    r.add_argument("--address", required=True)
    r.add_argument("--timeout", type=int, default=600)
    r.add_argument("--logs", default="")
    r.add_argument("steps", nargs="+", help="host=pid of each node's srun step")
    args = p.parse_args(argv)
    try:
        if args.cmd == "hosts":
            print("\n".join(expand_nodelist(os.environ["SLURM_JOB_NODELIST"])))
        elif args.cmd == "port":
            print(block_ports(free_block(int(os.environ["SLURM_JOB_ID"]), head=True))["port"])
        elif args.cmd == "token":
            print(secrets.token_hex(32))
        elif args.cmd == "ip":
            print(node_ip(args.interface or None))
        elif args.cmd == "start":
            return start(args)
        elif args.cmd == "wait-head":
            return wait_head(args)
        else:
            return ready(args)
    except NodeError as exc:
        print(f"raysweep: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
