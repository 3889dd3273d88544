"""The sbatch script `raysweep slurm` writes: plain bash a person can read, change and submit again. Its body is a
real file, `raysweep.sbatch` beside this module (checked by shellcheck in CI); in front of it go the #SBATCH
directives, the site's setup lines and the body's values as exported variables."""
from __future__ import annotations

import shlex
from datetime import datetime, timezone
from pathlib import Path

from raysweep.cluster.slurm import SlurmRequest, quote

BODY = Path(__file__).with_name("raysweep.sbatch")


def body() -> str:
    """The script's body: raysweep.sbatch without its own first line (the written script has its own)."""
    return BODY.read_text().split("\n", 1)[1]


def render(request: SlurmRequest, run_argv: list[str], *, python: str, logs: str, script: str, run_id: str) -> str:
    """The sbatch script for `python -m raysweep <run_argv> --address <head>` on `request`'s allocation."""
    width = max(len(opt) for opt, _ in request.directives(log="x")) + 1
    directives = [(f"#SBATCH {opt:{width}s}" + (f"# {why}" if why else "")).rstrip()
                  for opt, why in request.directives(log=f"{logs}/slurm-%j.out")]
    values = {"RAYSWEEP_PY": python, "RAYSWEEP_LOGS": logs, "RAYSWEEP_RUN": quote(run_argv),
              "RAYSWEEP_MAX_REQUEUES": str(request.max_requeues), "RAYSWEEP_READY_TIMEOUT": str(request.ready_timeout),
              "RAYSWEEP_IP_INTERFACE": request.ip_interface or ""}
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "#!/bin/bash",
        f"# raysweep on Slurm: {run_id}, written by `raysweep slurm` on {when}.",
        f"# Submit it again with `sbatch {script}`: a requeued or resubmitted job resumes from the store and",
        "# recomputes nothing that is stored.",
        *directives,
        "",
        *request.setup,
        *(f"export {k}={shlex.quote(v)}" for k, v in values.items()),
        "",
    ]
    return "\n".join(head) + "\n" + body()
