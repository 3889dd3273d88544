"""Ray inside a Slurm allocation: what `raysweep slurm` asks Slurm for, and what each node reads back
from the allocation. Plain values and the standard library only (the submit host may be a login node
without torch; the in-allocation helper, slurm_node.py, imports Ray only where it starts or joins it).

The pitfalls this handles (Ray's Slurm tracker, ray-project/ray#59551), one line each:

- ports: every Ray port pinned to a block derived from the job id, so that jobs whose ids differ by less than 48
  never share one; a node where that block is taken (another job, or any program) moves to the next free one;
- resources: --num-cpus/--num-gpus/--memory from the allocation, never the whole node's (#13607, #34846);
- GPUs: SLURM_GPUS_ON_NODE, which --gres sets too (SLURM_GPUS_PER_TASK is empty then);
- temp folder: short and node-local per job (sockets break on NFS, /tmp/ray may belong to another user);
- the head's IP, not its name (a name may resolve to loopback or to the wrong network on multi-NIC nodes);
- start-up: readiness polled until every node joined, a node that does not is named (no fixed sleep);
- teardown: only this job's steps are signalled (a bare `ray stop` kills every Ray on the node, #43449).
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from raysweep.errors import SpecError

# Ports: block (job id mod 48) of 600 ports from 3000, all below Linux's ephemeral range (32768-60999), where
# an outgoing connection could take a port first. The first ports are Ray's named ones, the rest its workers'.
# The blocks repeat every 48 job ids: two jobs 48 ids apart on one node would meet, and so would a job and any
# other program holding a port of its block; a node that finds its block taken uses the next free one
# (slurm_node.free_block), the head's choice travelling to the workers in the head's address.
PORT_FIRST, PORT_BLOCK, PORT_BLOCKS, WORKER_OFFSET = 3000, 600, 48, 100
RAY_PORTS = ("port", "node-manager-port", "object-manager-port", "runtime-env-agent-port",
             "dashboard-agent-grpc-port", "dashboard-agent-listen-port", "metrics-export-port",
             "ray-client-server-port", "dashboard-port")
HEAD_ONLY_PORTS = ("ray-client-server-port", "dashboard-port")


def job_block(job_id: int) -> int:
    """The block of ports a Slurm job tries first: jobs whose ids differ by less than 48 try different ones."""
    return int(job_id) % PORT_BLOCKS


def block_ports(block: int) -> dict[str, int]:
    """Every port Ray uses on a node in this block of ports."""
    base = PORT_FIRST + (int(block) % PORT_BLOCKS) * PORT_BLOCK
    ports = {name: base + i for i, name in enumerate(RAY_PORTS)}
    ports["min-worker-port"], ports["max-worker-port"] = base + WORKER_OFFSET, base + PORT_BLOCK - 1
    return ports


def job_ports(job_id: int) -> dict[str, int]:
    """The ports of the block a job tries first (job_block): the same on every node of the job."""
    return block_ports(job_block(job_id))


def block_of_port(port: int) -> int:
    """The block a head's GCS port belongs to (its first port)."""
    return (int(port) - PORT_FIRST) // PORT_BLOCK


def expand_nodelist(text: str) -> list[str]:
    """Slurm's compact host list, expanded as `scontrol show hostnames` does:
    "gpu[01-04,07],cpu5" -> gpu01 gpu02 gpu03 gpu04 gpu07 cpu5 (zero padding kept; several
    bracket groups in one name multiply out: "r[1-2]n[1-2]" -> r1n1 r1n2 r2n1 r2n2)."""
    names: list[str] = []
    for item in _split_top(text.strip()):
        names += _expand_one(item)
    return names


def _split_top(text: str) -> list[str]:
    """Split at the commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            raise SpecError(f"node list {text!r}: a ']' without its '['")
        cur += ch
    if depth:
        raise SpecError(f"node list {text!r}: a '[' without its ']'")
    return [s for s in [*out, cur] if s]


def _expand_one(name: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", name)
    if not m:
        return [name]
    head, tail, values = name[:m.start()], name[m.end():], []
    for part in m.group(1).split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise SpecError(f"node list {name!r}: {part!r} is not a number or a range lo-hi")
        width = len(lo)
        values += [str(v).zfill(width) for v in range(int(lo), int(hi or lo) + 1)]
    return [f"{head}{v}{rest}" for v in values for rest in _expand_one(tail)]


def _count(value: str | None) -> int | None:
    """A GPU count as Slurm writes it: "4", "a100:4", "gpu:a100:4" (None when absent or not a count)."""
    if not value:
        return None
    last = value.split(",")[0].rsplit(":", 1)[-1]
    return int(last) if last.isdigit() else None


def allocation(env=os.environ) -> dict[str, int | None]:
    """What this node of the allocation may use: CPUs, GPUs and memory (bytes, None when Slurm did not
    say). Ray is started with exactly these, never the whole node's (ray-project/ray#13607)."""
    cpus = _count(env.get("SLURM_CPUS_PER_TASK")) or _count(env.get("SLURM_CPUS_ON_NODE"))
    if not cpus:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gpus = _count(env.get("SLURM_GPUS_ON_NODE"))  # set for --gpus-per-node, --gpus-per-task and --gres alike
    if gpus is None:
        gpus = _count(env.get("SLURM_GPUS_PER_NODE"))
    if gpus is None:
        job_gpus = env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS") or ""
        gpus = len([g for g in job_gpus.split(",") if g.strip()])
    memory = None
    if _count(env.get("SLURM_MEM_PER_NODE")):
        memory = int(env["SLURM_MEM_PER_NODE"]) << 20  # megabytes
    elif _count(env.get("SLURM_MEM_PER_CPU")):
        memory = (int(env["SLURM_MEM_PER_CPU"]) << 20) * cpus
    return {"cpus": int(cpus), "gpus": int(gpus), "memory": memory}


@dataclass(frozen=True)
class SlurmRequest:
    """What one `raysweep slurm` asks of Slurm; every field is an sbatch option or a setting of the script."""
    nodes: int = 1
    gpus_per_node: int = 0
    gres: bool = False  # ask for GPUs with --gres=gpu:G (older sites) instead of --gpus-per-node=G
    cpus_per_node: int | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_args: tuple[str, ...] = ()
    max_requeues: int = 3
    signal_lead: int = 300  # seconds before the time limit that USR1 comes
    shared_nodes: bool = False
    setup: tuple[str, ...] = ()  # shell lines run first on every start (module load ..., source venv)
    ip_interface: str | None = None
    ready_timeout: int = 600
    job_name: str = "raysweep"

    def check(self) -> None:
        if self.nodes < 1:
            raise SpecError(f"--nodes {self.nodes}: a job needs at least one node.")
        if self.gpus_per_node < 0 or (self.cpus_per_node is not None and self.cpus_per_node < 1):
            raise SpecError("--gpus-per-node must be 0 or more and --cpus-per-node 1 or more.")
        if self.max_requeues < 0 or self.signal_lead < 10 or self.ready_timeout < 10:
            raise SpecError("--max-requeues must be 0 or more, --signal-lead and --ready-timeout 10 s or more.")
        if self.time is not None and not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}|UNLIMITED|INFINITE", self.time):
            raise SpecError(f"--time {self.time!r} is not a Slurm time: minutes, MM:SS, HH:MM:SS, D-HH or "
                            f"D-HH:MM:SS, e.g. --time 2-00:00:00 for two days.")
        if self.mem is not None and not re.fullmatch(r"\d+[KMGT]?", self.mem, re.IGNORECASE):
            raise SpecError(f"--mem {self.mem!r} is not a Slurm size: a number of megabytes or one with K, M, G "
                            f"or T, e.g. --mem 200G (0 asks for all of each node's memory).")

    def directives(self, log: str) -> list[tuple[str, str]]:
        """(#SBATCH option, why) in the order the script lists them."""
        out = [(f"--job-name={self.job_name}", ""),
               (f"--nodes={self.nodes}", ""),
               ("--ntasks-per-node=1", "one Ray node per Slurm node; Ray places trials and actors on its GPUs")]
        if self.cpus_per_node:
            out.append((f"--cpus-per-task={self.cpus_per_node}", "all of it is Ray's --num-cpus on the node"))
        if self.gpus_per_node:
            out.append((f"--gres=gpu:{self.gpus_per_node}" if self.gres else f"--gpus-per-node={self.gpus_per_node}",
                        "Ray's --num-gpus on each node (SLURM_GPUS_ON_NODE)"))
        for opt, value in (("mem", self.mem), ("time", self.time), ("partition", self.partition),
                           ("account", self.account), ("qos", self.qos)):
            if value is not None:
                out.append((f"--{opt}={value}", ""))
        if not self.shared_nodes:  # with --shared-nodes other jobs may share the nodes: the pinned ports keep apart
            out.append(("--exclusive", "Ray assumes it owns the node (/dev/shm, GPUs); --shared-nodes drops this"))
        out += [("--requeue", "USR1 -> stop -> `scontrol requeue`: this script runs again and resumes"),
                (f"--signal=B:USR1@{self.signal_lead}", f"USR1 to this shell (B:) {self.signal_lead} s before the "
                                                        f"time limit, or on `scancel --signal=USR1 --batch`"),
                ("--open-mode=append", "a requeued job appends to the same log"),
                (f"--output={log}", "")]
        out += [(a, "--sbatch-arg") for a in self.sbatch_args]
        return out


SLURM_HINT = ("`sinfo -o '%P %D %c %m %G %l'` lists each partition's nodes, CPUs, memory (MB), GPUs (gres) and time "
              "limit")


def refusal(stderr: str, request: SlurmRequest) -> str:
    """sbatch's refusal as one paragraph: what Slurm said, what was asked, and the fix."""
    said = " ".join(line.strip() for line in stderr.strip().splitlines() if line.strip()) or "(no message)"
    said = re.sub(r"^(sbatch: error: )+", "", said)
    asked = (f"{request.nodes} node(s) × {request.gpus_per_node} GPU(s)"
             f"{f', {request.cpus_per_node} CPUs' if request.cpus_per_node else ''}"
             f"{f', --mem {request.mem}' if request.mem else ''}{f', --time {request.time}' if request.time else ''}"
             f" in partition {request.partition or '(the default)'}")
    low = said.lower()
    if "partition" in low:
        fix = f"give a partition that exists with --partition ({SLURM_HINT})"
    elif "account" in low or "qos" in low or "association" in low:
        fix = "check --account and --qos (`sacctmgr show assoc user=$USER` lists yours)"
    elif "time limit" in low:
        fix = f"ask for less time with --time, within the partition's limit ({SLURM_HINT})"
    else:
        fix = (
            f"ask for what the partition's nodes have: lower --nodes, --gpus-per-node, --cpus-per-node or --mem, or "
            f"pick another --partition ({SLURM_HINT})"
        )
    return f"Slurm refused the job ({asked}): {said}. Fix: {fix}; nothing was submitted or written."


def quote(args) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)
