"""Shared by the benchmarks: the machine's description and writing a result table into README.md."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Callable

README = Path(__file__).parent / "README.md"


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def watched(cmd: list[str], sample: Callable) -> tuple[float, str]:
    """Run `cmd` (RAY_AUTH_MODE=disabled, stderr dropped), calling sample(root, processes) every 0.1 s with the
    psutil processes of its tree; (wall seconds, stdout). A failed command stops the benchmark."""
    import psutil

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            sample(root, [root] + root.children(recursive=True))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - t
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return wall, out


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, text: str) -> None:
    """Replace the README section between <!-- bench:NAME --> markers (or append it)."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{text.strip()}\n\n_Measured {time.strftime('%Y-%m-%d')} on {machine()}._\n{end}"
    content = README.read_text() if README.exists() else "# Benchmarks\n"
    if begin in content:
        content = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, content, flags=re.S)
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    README.write_text(content)
    print(text)


def publish(name: str, text: str, print_only: bool = False) -> None:
    """Print the table; unless print_only, also write it into README.md."""
    if print_only:
        print(text)
    else:
        write_section(name, text)


def timed(fn, repeat: int = 1):
    """(best seconds over `repeat` runs, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out
