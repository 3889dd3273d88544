"""Benchmark 6 — aggregation: time and peak memory of building the curves and barriers tables.

Synthetic rows in the store's own layout (an I2 sweep, `step_to_final`, F's 125 ImageNet checkpoints,
100 α, as many replicates as the size needs), in two shapes:
- `--layout items`: one-row item files, as the ImageNet job stores its sweep (one α per item):
  37,500 files = 3 replicates x 125 checkpoints x 100 α;
- `--layout rows`: many rows per file, e.g. 1.25M rows (100 replicates) or 5M rows (400 replicates).

Each measurement runs in a fresh child process (`--child`), so its peak resident memory (ru_maxrss)
is the aggregation's alone. `--code DIR` measures another checkout of raysweep (the "before" column).

    python benchmarks/aggregate.py                       # the three README sizes
    python benchmarks/aggregate.py --layout rows --rows 1000000 --no-write
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the checkout being measured (a child is told which with RAYSWEEP_BENCH_CODE), else this one
sys.path.insert(0, os.environ.get("RAYSWEEP_BENCH_CODE") or str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))

CHECKPOINTS = 125  # F's schedule for the ImageNet run
JOB = {"name": "aggbench", "replicates": 400, "data": {"name": "digits"},
       "sweeps": [{"name": "step_to_final", "kind": "step_to_final", "alpha": {"num": 100}}]}


def write_store(root: str, layout: str, rows: int, files: int) -> None:
    """Rows of the I2 sweep with seeded random losses, in `files` item files."""
    import numpy as np
    import pyarrow as pa

    from raysweep.io import paths
    from raysweep.io.schemas import POINT_SCHEMA
    from raysweep.io.store import Store
    from raysweep.spec import parse_job, sweep_hash
    from raysweep.work.kinds import sweep_folder

    job = parse_job(JOB)
    sweep = job.sweep("step_to_final")
    run, h = paths.run_dir(job.name, job.hash), sweep_hash(sweep)
    store = Store(root)
    n_alpha = 100
    pairs = rows // n_alpha
    alphas = np.linspace(0, 1, n_alpha)
    rng = np.random.default_rng(0)
    per_file = max(1, rows // files)
    replicates = max(3, pairs // CHECKPOINTS)
    # row i: pair p = i // 100 (replicate p % R, checkpoint p // R), α index i % 100
    for f in range(files):
        lo, hi = f * per_file, min(rows, (f + 1) * per_file)
        i = np.arange(lo, hi)
        p, j = i // n_alpha, i % n_alpha
        k, step = (p % replicates).astype(np.int32), (p // replicates).astype(np.int64)
        a0, a1 = int(j[0]), int(j[-1]) + 1
        key = f"r{k[0]}-s{step[0]}__r{k[0]}-s{CHECKPOINTS}__a{a0:05d}-{a1:05d}" + (f"-f{f}" if layout == "rows" else "")
        n = hi - lo
        loss = 2.3 * (1 - alphas[j]) ** 2 + 0.1 + 0.05 * rng.random(n)
        cols = {"job": [job.name] * n, "hash": [job.hash] * n, "sweep": ["step_to_final"] * n, "sweep_hash": [h] * n,
                "item": [key] * n, "replicate_a": k, "replicate_b": k, "step_a": step,
                "step_b": np.full(n, CHECKPOINTS, dtype=np.int64), "alpha": alphas[j], "split": ["test"] * n,
                "loss": loss, "error": np.minimum(1.0, loss / 2.5), "n_examples": np.full(n, 50_000, dtype=np.int64),
                "distance": 100.0 + step, "norm_a": np.full(n, 200.0), "bn": ["interpolate"] * n,
                "sha256_a": ["a" * 64] * n, "sha256_b": ["b" * 64] * n, "node_id": ["n" * 56] * n,
                "device": ["cuda"] * n, "gpu_ids": ["0"] * n}
        store.write_table(paths.point_file(sweep_folder(run, sweep), key), pa.table(cols, schema=POINT_SCHEMA))


def child(root: str) -> None:
    """Build curves and barriers from the store at `root`; print seconds and the tables' sizes."""
    import raysweep
    from raysweep.analysis import aggregate

    print(f"measuring {raysweep.__file__}", file=sys.stderr)
    from raysweep.io.store import Store
    from raysweep.spec import parse_job

    job, store = parse_job(JOB), Store(root)
    mine = Path(root) / job.name / job.hash
    if not mine.exists():  # a checkout whose run hash differs (another recipe): the same rows under its hash
        mine.symlink_to(next(p for p in (Path(root) / job.name).iterdir() if not p.is_symlink()))
    t = time.perf_counter()
    if hasattr(aggregate, "line_tables"):  # both tables from one read of the points
        c, b = aggregate.line_tables(store, job)
    else:
        c, b = aggregate.build("curves", store, job), aggregate.build("barriers", store, job)
    seconds = time.perf_counter() - t
    print(
        json.dumps(
            {
                "seconds": seconds,
                "curves": c.height,
                "barriers": b.height,
                "loss_mean_sum": float(c["loss_mean"].sum()),
                "barrier_sum": float(b["peak_over_ends_mean"].sum()),
            }
        )
    )


def measure(root: str, code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": code, "RAYSWEEP_BENCH_CODE": code}
    proc = subprocess.Popen([sys.executable, __file__, "--child", root], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=code)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so its own rusage comes back
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the aggregation child failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_gb"] = usage.ru_maxrss / 2**20  # kB on Linux
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--layout", choices=["items", "rows"])
    ap.add_argument("--rows", type=int, default=37_500)
    ap.add_argument("--files", type=int, default=0, help="item files (items: one per row; rows: rows/25,000)")
    ap.add_argument("--code", default=str(Path(__file__).parent.parent), help="the raysweep checkout to measure")
    ap.add_argument("--before", default="", help="another checkout to measure beside it (the 'before' column)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    from common import publish, table

    cases = (
        [(args.layout, args.rows, args.files or (args.rows if args.layout == "items" else max(1, args.rows // 25_000)))]
        if args.layout
        else [("items", 37_500, 37_500), ("rows", 1_250_000, 50), ("rows", 5_000_000, 200)]
    )
    out, results = [], []
    for layout, rows, files in cases:
        with tempfile.TemporaryDirectory() as root:
            write_store(root, layout, rows, files)
            now = measure(root, args.code)
            then = measure(root, args.before) if args.before else None
        results.append((now, then))
        same_sums = then is None or all(
            abs(then[k] - now[k]) <= 1e-9 * abs(then[k]) for k in ("loss_mean_sum", "barrier_sum")
        )
        if then and ((then["curves"], then["barriers"]) != (now["curves"], now["barriers"]) or not same_sums):
            raise SystemExit(f"the two checkouts built different tables: {then} vs {now}")
        row = [f"{rows:,} rows in {files:,} files", now["curves"], now["barriers"]]
        if then:
            row += [f"{then['seconds']:.1f} s, {then['peak_gb']:.2f} GB"]
        row += [f"{now['seconds']:.1f} s, {now['peak_gb']:.2f} GB"]
        if then:
            row += [f"{then['seconds'] / now['seconds']:.1f}x"]
        out.append(row)
        print(row, flush=True)
    header = ["input", "curve rows", "barrier rows"] + (["before"] if args.before else []) + ["raysweep"] + (
        ["speed-up"] if args.before else [])
    verdict = ""
    if args.before and not args.layout:
        big = [r for r, (layout, rows, _) in zip(results, cases) if rows >= 5_000_000 or layout == "items"]
        ok = all(now["peak_gb"] < 1.0 and then["seconds"] / now["seconds"] >= 0.95 for now, then in big)
        measured = "; ".join(f"{now['peak_gb']:.2f} GB, {then['seconds'] / now['seconds']:.1f}x" for now, then in big)
        verdict = (f"\n\nTarget: 5M rows and 37,500 one-row files each under 1 GB peak with the pinned Polars "
                   f"(constraints.txt), no slower than before, identical tables — {'met' if ok else 'NOT met'} "
                   f"({measured}).")
    publish(
        "aggregate",
        "### 6. Aggregation — curves and barriers tables from stored points\n\n"
        "Time and peak memory (child process ru_maxrss) of building the curves and barriers tables of an "
        "I2 sweep (125 checkpoints, 100 α per pair) stored in the store's layout. `python benchmarks/aggregate.py"
        + (" --before OLD_CHECKOUT" if args.before else "")
        + "` (before: the checkout named by --before; here "
        "commit 4b9d97f, whose per-part eager filters copied the whole frame under Polars 2)\n\n"
        + table(header, out)
        + verdict,
        print_only=args.no_write,
    )


if __name__ == "__main__":
    main()
