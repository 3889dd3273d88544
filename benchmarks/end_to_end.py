"""Benchmark 3 — `raysweep run digits_mlp` from nothing: wall time and peak memory of the whole
process tree (driver, Ray's daemons, Tune trials, evaluator actors), then the rerun, side by side in one run
with the plain single-process script that does the same work (benchmarks/plain_digits.py: the same 3
replicates, the same 7,803 evaluations and T2 rows, no Ray, no store, no resume).

    python benchmarks/end_to_end.py
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import publish, table, watched  # noqa: E402


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak summed RSS of the process tree in GiB, stdout)."""
    peak = [0]

    def sample(root, procs):
        peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs if p.is_running()))

    wall, out = watched(cmd, sample)
    return wall, peak[0] / 2**30, out


def phases(stdout: str) -> dict[str, float]:
    """train / sweep / aggregate+report seconds from the run's `done:` line."""
    line = next((x for x in stdout.splitlines() if x.startswith("done:")), "")
    return {k: float(v) for k, v in re.findall(r"(train|sweep|aggregate\+report) ([0-9.]+)s", line)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    plain_script = str(Path(__file__).parent / "plain_digits.py")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "raysweep.cli", "run", "digits_mlp", "--storage", tmp, "--no-progress"]
        plain = run([sys.executable, plain_script, str(Path(tmp) / "plain")])
        first = run(cmd)
        second = run(cmd)
        plain_again = run([sys.executable, plain_script, str(Path(tmp) / "plain2")])
    base = min(plain[0], plain_again[0])
    took = phases(first[2])
    start = first[0] - sum(took.values())
    rows = [
        ["plain single-process script (benchmarks/plain_digits.py), best of two", f"{base:.1f}",
         f"{max(plain[1], plain_again[1]):.2f}", "1.00x"],
        ["raysweep, first run (train 3 replicates, 7,803 evaluations + 39 T2 rows = 7,842 rows, report)",
         f"{first[0]:.1f}", f"{first[1]:.2f}", f"{first[0] / base:.2f}x"],
        ["raysweep, second run (nothing to compute)", f"{second[0]:.1f}", f"{second[1]:.2f}",
         f"{second[0] / base:.2f}x"],
    ]
    where = ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    plain_line = next((x for x in plain[2].splitlines() if x.startswith("plain:")), "")
    ratio = first[0] / base
    text = ("### 3. End to end — `raysweep run digits_mlp` against the plain script\n\n"
            "`python benchmarks/end_to_end.py`\n\n"
            + table(["run", "wall seconds", "peak memory of the process tree (GiB)", "vs plain"], rows)
            + f"\n\nWhere the first run's seconds go: start-up before training (Python and library imports, Ray's "
              f"head, the job's checks) {start:.1f} s, {where}. The plain script: `{plain_line}`. "
              f"Targets: ≤ 60 s on 2 cores — {'met' if first[0] <= 60 else 'NOT met'}; the cold run ≤ 1.5× the "
              f"plain script — {'met' if ratio <= 1.5 else f'NOT met ({ratio:.2f}x)'}.")
    publish("end_to_end", text, args.no_write)


if __name__ == "__main__":
    main()
