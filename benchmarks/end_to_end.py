"""Benchmark 3 — `raysweep run digits_mlp` from nothing: wall time and peak memory of the whole
process tree (driver, Ray's daemons, Tune trials, evaluator actors), then the rerun.

    python benchmarks/end_to_end.py
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from common import publish, table  # noqa: E402


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak summed RSS of the process tree in GiB, stdout)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - t
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return wall, peak / 2**30, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "raysweep.cli", "run", "digits_mlp", "--storage", tmp, "--no-progress"]
        first = run(cmd)
        second = run(cmd)
    phases = next((line for line in first[2].splitlines() if line.startswith("done:")), "")
    rows = [
        [
            "first run (train 3 replicates, 7,803 evaluations + 39 T2 projection rows = 7,842 rows, report)",
            f"{first[0]:.1f}",
            f"{first[1]:.2f}",
        ],
        ["second run (nothing to compute)", f"{second[0]:.1f}", f"{second[1]:.2f}"],
    ]
    text = ("### 3. End to end — `raysweep run digits_mlp`\n\n`python benchmarks/end_to_end.py`\n\n"
            + table(["run", "wall seconds", "peak memory of the process tree (GiB)"], rows)
            + f"\n\nPhases of the first run: `{phases}`. Target: ≤ 60 s on 2 cores — "
              f"{'met' if first[0] <= 60 else 'NOT met'}.")
    publish("end_to_end", text, args.no_write)


if __name__ == "__main__":
    main()
