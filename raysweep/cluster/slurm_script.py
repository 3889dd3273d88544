"""The sbatch script `raysweep slurm` writes: plain bash a person can read, change and submit again.
The steps that need care (this node's address, Ray's start with the allocation's resources and the
job's ports, readiness) are `python -m raysweep.cluster.slurm_node` calls, each named in a comment."""
from __future__ import annotations

import shlex
from datetime import datetime, timezone

from raysweep.cluster.slurm import SlurmRequest, quote

TEMPLATE = r"""#!/bin/bash
# raysweep on Slurm: {run_id}, written by `raysweep slurm` on {when}.
# Submit it again with `sbatch {script}`: a requeued or resubmitted job resumes from the store and recomputes
# nothing that is stored.
{directives}

set -uo pipefail
umask 077   # the token and Ray's temp folder are this user's alone

{setup}PY={python}   # the Python that has raysweep, on every node (a shared filesystem)
LOGS={logs}
RUN=({run})
MAX_REQUEUES={max_requeues}
READY_TIMEOUT={ready_timeout}   # seconds for every node's Ray to join before the job fails, naming the missing
IP_INTERFACE={ip_interface}   # the network interface whose address Ray uses; empty: the one the host name resolves to
node() {{ "$PY" -m raysweep.cluster.slurm_node "$@"; }}
echo "raysweep: job $SLURM_JOB_ID start ${{SLURM_RESTART_COUNT:-0}} on $SLURM_JOB_NODELIST at $(date -u +%FT%TZ)"

# 1. The nodes, the head's address (this shell runs on the first node) and this job's ports.
NODES=($(node hosts)) && [ "${{#NODES[@]}}" -gt 0 ] || exit 1   # $SLURM_JOB_NODELIST expanded, as scontrol does
HEAD=${{NODES[0]}}
HEAD_IP=$(node ip --interface "$IP_INTERFACE") || exit 1   # an IP, not the name: names may resolve to loopback
PORT=$(node port) || exit 1   # every Ray port comes from a block derived from $SLURM_JOB_ID: jobs sharing a node differ
ADDRESS=$HEAD_IP:$PORT

# 2. A fresh token for this start (Ray 2.60's token authentication): the cluster's network is shared with
#    every user, who could otherwise submit work to this Ray. Each node writes it to a 0600 file in its own temp
#    folder; it travels to them in the environment of srun (not on a command line, where `ps` would show it).
export RAYSWEEP_SLURM_TMP=/tmp/rs-$SLURM_JOB_ID   # short and node-local: Ray's sockets (NFS breaks them)
mkdir -p "$RAYSWEEP_SLURM_TMP" || exit 1
RAYSWEEP_RAY_TOKEN=$(node token) || exit 1
export RAY_AUTH_MODE=token RAYSWEEP_RAY_TOKEN
printf %s "$RAYSWEEP_RAY_TOKEN" > "$RAYSWEEP_SLURM_TMP/token"
export RAY_AUTH_TOKEN_PATH=$RAYSWEEP_SLURM_TMP/token

# 3. Ray on every node: `ray start --block` in one srun step per node, with the allocation's CPUs, GPUs and memory.
#    Not `ray symmetric-run`: it refuses a node where any Ray runs, ends with a bare `ray stop` (which stops
#    every user's Ray on the node) and waits 30 s at most for the nodes; with steps of our own, stopping them
#    stops only this job's Ray.
STEPS=()
for host in "${{NODES[@]}}"; do
  role=(--address "$ADDRESS"); [ "$host" = "$HEAD" ] && role=(--head --ip "$HEAD_IP")
  srun --nodes=1 --ntasks=1 --whole --overlap -w "$host" "$PY" -m raysweep.cluster.slurm_node start "${{role[@]}}" \
       --interface "$IP_INTERFACE" --logs "$LOGS" >> "$LOGS/ray-$SLURM_JOB_ID-$host.log" 2>&1 &
  STEPS+=("$host=$!")
done
unset RAYSWEEP_RAY_TOKEN

stop_ray() {{   # only this job's steps: `scancel --signal` reaches them, not this shell, not another job's Ray
  scancel --signal=TERM "$SLURM_JOB_ID" 2>/dev/null
  for step in "${{STEPS[@]}}"; do
    pid=${{step#*=}}
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$RAYSWEEP_SLURM_TMP"
}}

STOPPED=0
DRIVER=
on_usr1() {{   # the time limit is near (or a preemption): stop as on Ctrl-C, then requeue below
  echo "raysweep: USR1 at $(date -u +%FT%TZ): stopping; everything finished is stored"
  STOPPED=1
  [ -n "$DRIVER" ] && kill -USR1 "$DRIVER" 2>/dev/null
}}
trap on_usr1 USR1

# 4. Wait until every node joined (polled, never a fixed sleep); a node that did not is named, with its log.
node ready --address "$ADDRESS" --timeout "$READY_TIMEOUT" --logs "$LOGS" "${{STEPS[@]}}"
rc=$?

# 5. The run, on the head, in the background: a trapped signal interrupts `wait` at once.
if [ "$rc" = 0 ] && [ "$STOPPED" = 0 ]; then
  "$PY" -u -m raysweep "${{RUN[@]}}" --address "$ADDRESS" &
  DRIVER=$!
  wait "$DRIVER"; rc=$?
  while kill -0 "$DRIVER" 2>/dev/null; do wait "$DRIVER"; rc=$?; done   # USR1 interrupted `wait`: the driver stops
fi

# 6. Stop this job's Ray, then requeue if USR1 came and requeues are left (SLURM_RESTART_COUNT counts them).
stop_ray
if [ "$STOPPED" = 1 ]; then
  if [ "${{SLURM_RESTART_COUNT:-0}}" -lt "$MAX_REQUEUES" ]; then
    echo "raysweep: requeueing job $SLURM_JOB_ID (requeue $(( ${{SLURM_RESTART_COUNT:-0}} + 1 )) of $MAX_REQUEUES)"
    scontrol requeue "$SLURM_JOB_ID" && exit 0
    echo "raysweep: scontrol requeue failed: submit this script again to resume"
  else
    echo "raysweep: stopped after $MAX_REQUEUES requeue(s): submit this script again to resume"
  fi
  exit 1
fi
echo "raysweep: job $SLURM_JOB_ID ended with exit code $rc at $(date -u +%FT%TZ)"
exit "$rc"
"""


def render(request: SlurmRequest, run_argv: list[str], *, python: str, logs: str, script: str, run_id: str) -> str:
    """The sbatch script for `python -m raysweep <run_argv> --address <head>` on `request`'s allocation."""
    width = max(len(opt) for opt, _ in request.directives(log="x")) + 1
    lines = [f"#SBATCH {opt:{width}s}" + (f"# {why}" if why else "").rstrip()
             for opt, why in request.directives(log=f"{logs}/slurm-%j.out")]
    setup = "".join(f"{line}\n" for line in request.setup)
    return TEMPLATE.format(
        run_id=run_id, when=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), script=script,
        directives="\n".join(line.rstrip() for line in lines), setup=setup, python=shlex.quote(python),
        logs=shlex.quote(logs), run=quote(run_argv), max_requeues=request.max_requeues,
        ready_timeout=request.ready_timeout, ip_interface=shlex.quote(request.ip_interface or ""))
