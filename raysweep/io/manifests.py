"""Checkpoint manifests (``replicate_<k>/step_<s>.json``): read defensively, checked against their
schema; the checkpoint path is derived from (job, replicate, step), never taken from the file."""
from __future__ import annotations

import json
import re

from raysweep.errors import ManifestError
from raysweep.io import paths
from raysweep.io.runs import locator
from raysweep.io.store import Store
from raysweep.spec import Job

_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_manifests(store: Store, job: Job, k: int) -> dict[int, dict]:
    """step -> manifest entry of replicate k, each checked against its schema. The checkpoint path is
    derived from (job, replicate, step), never taken from the file."""
    run = paths.run_dir(job.name, job.hash)
    out = {}
    for p in store.list(paths.replicate_dir(run, k), paths.JSON):
        match = paths.MANIFEST_NAME.fullmatch(p.rsplit("/", 1)[-1])
        if not match:
            continue
        step = int(match.group(1))
        try:
            entry = json.loads(store.read_bytes(p))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(_manifest_problem(store, job, k, p, f"is not valid JSON ({exc})")) from None
        problem = ("is not a JSON object" if not isinstance(entry, dict) else
                   f"says step {entry.get('step')!r}, its name step {step}" if entry.get("step") != step
                   or isinstance(entry.get("step"), bool) else
                   f"says replicate {entry.get('replicate')!r}" if entry.get("replicate") != k else
                   "has no valid sha256" if not isinstance(entry.get("sha256"), str)
                   or not _SHA256.fullmatch(entry["sha256"]) else "")
        if problem:
            raise ManifestError(_manifest_problem(store, job, k, p, problem))
        out[step] = {**entry, "path": paths.checkpoint(run, k, step)}
    return out


def _manifest_problem(store: Store, job: Job, k: int, path: str, what: str) -> str:
    return (f"checkpoint manifest {store.url(path)} {what}: replicate {k} of {job.name} cannot be trusted. "
            f"Retrain it with `raysweep train {locator(job, store)} --replicate {k} --force` (other replicates are "
            f"kept), then rerun `raysweep run {locator(job, store)}`.")
