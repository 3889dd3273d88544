"""Benchmark 11 — `raysweep slurm` on a real one-node Slurm (as root: Debian's slurm-wlm and munge, started
by tests/slurm_cluster.py) against the same `raysweep run` without Slurm: what starting Ray in the
allocation costs, and what a USR1 (the time limit's notice) -> stop -> requeue -> resume costs.

    python benchmarks/slurm.py [--epochs 30]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from common import publish, table  # noqa: E402
from slurm_cluster import OneNodeSlurm, available  # noqa: E402


def stamps(log: str) -> dict[str, datetime]:
    """When each start began and ended, from the script's own lines."""
    out = {}
    for m in re.finditer(r"raysweep: job \d+ (start \d+|ended with exit code \d+) .*?at (\S+Z)", log):
        out[m.group(1).split(" with")[0]] = datetime.fromisoformat(m.group(2).replace("Z", "+00:00"))
    return out


def slurm_run(cluster: OneNodeSlurm, args: list[str], storage: str, usr1: bool) -> tuple[float, str]:
    t = time.perf_counter()
    r = cluster.run(sys.executable, "-m", "raysweep", "slurm", *args, "--storage", storage, check=True)
    job_id = re.search(r"submitted Slurm job (\d+)", r.stdout).group(1)
    log = Path(re.search(r"log +(\S+)", r.stdout).group(1))
    if usr1:
        while not list(Path(storage).rglob("replicate_*/step_*.json")):
            time.sleep(0.2)
        cluster.run("scancel", "--signal=USR1", "--batch", job_id, check=True)
    info = cluster.wait_job(job_id, timeout=1800)
    wall = time.perf_counter() - t
    if info["JobState"] != "COMPLETED":
        raise SystemExit(f"job {job_id} ended {info['JobState']}:\n{log.read_text()[-3000:]}")
    return wall, log.read_text()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    why = available()
    if why:
        raise SystemExit(f"no Slurm here: {why}")
    args = ["digits_mlp", "--set", f"train.epochs={a.epochs}", "--no-report"]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "raysweep", "run", *args, "--storage", f"{tmp}/local"], check=True,
                       capture_output=True)
        local = time.perf_counter() - t
        cluster = OneNodeSlurm(Path(tmp) / "slurm").start()
        try:
            plain, log = slurm_run(cluster, args, f"{tmp}/plain", usr1=False)
            requeued, log2 = slurm_run(cluster, args, f"{tmp}/requeued", usr1=True)
        finally:
            cluster.stop()
    up = re.search(r"Ray is up", log)
    s = stamps(log2)
    pause = (s["start 1"] - s["start 0"]).total_seconds() if "start 1" in s else float("nan")
    rows = [["`raysweep run` on this machine (local Ray)", f"{local:.1f}", "—"],
            ["`raysweep slurm`, submitted → COMPLETED", f"{plain:.1f}", f"+{plain - local:.1f} s"],
            ["`raysweep slurm`, USR1 at the first checkpoint → requeued → COMPLETED", f"{requeued:.1f}",
             f"+{requeued - plain:.1f} s over the uninterrupted job"]]
    text = (f"### 11. Slurm — `raysweep slurm digits_mlp` vs `raysweep run digits_mlp` (train.epochs = {a.epochs})\n\n"
            f"`python benchmarks/slurm.py` (as root: a one-node Slurm 22.05 of Debian's packages on this machine)\n\n"
            + table(["run", "wall seconds", "overhead"], rows)
            + f"\n\nThe Slurm job's extra time is Ray's start in the allocation (srun step, `ray start`, the head's "
              f"dashboard, readiness polled{'' if up else ' — not seen'}) and its stop at the end. The requeued job "
              f"restarted {pause:.0f} s after the first start began: the stop and requeue, then Slurm's own delay "
              f"before a requeued job may start again (here `cred_expire=5`, about 20 s; Slurm's default is 121 s, "
              f"add that on a real cluster), then Ray's start again; training resumed from the last stored state.")
    publish("slurm", text, a.no_write)


if __name__ == "__main__":
    main()
