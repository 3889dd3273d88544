"""What can go wrong, by kind. The base of the package: it imports nothing of raysweep, and the CLI
maps each kind to one paragraph and an exit code (2: input a user can fix; 1: work that failed)."""
from __future__ import annotations


class SpecError(ValueError):
    """A job file, override or argument that cannot be used; the message names the key and the fix."""


class RunNotFound(SpecError):
    """No stored run matches the job and overrides given; the message lists the runs that exist."""


class MissingResults(SpecError):
    """The settings asked for name a sweep with no stored points; the message names it and the fix."""


class StoreError(RuntimeError):
    """Storage that cannot be used; the message names the URI and what to check."""


class StorageFull(OSError):
    """No space left (or the quota reached) in the storage: the message names the storage, what was being
    written and the fix; everything finished before is stored. Raised as StorageFull(errno.ENOSPC, message)."""

    def __str__(self) -> str:
        return str(self.args[-1]) if self.args else ""


class WriteMismatch(OSError):
    """An object read back with another size than was written (a proxy or a server that stored
    something else): a transient error, retried."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not match its recorded sha256."""


class ManifestError(RuntimeError):
    """A checkpoint manifest that does not parse or fails its schema; names the file and the repair."""


class DatasetMissing(FileNotFoundError):
    """The dataset is not where the job says; the message says where it was looked for and how to get it."""


class NotTrainedError(RuntimeError):
    """A sweep was asked of replicates (or instability children) that are not trained yet."""


class TrainingFailed(RuntimeError):
    """A training trial failed after Tune's retries; the message carries its error."""


class RehearsalFailed(SpecError):
    """A stage of `raysweep run --rehearse` that failed: the message names the stage, the node and the fix."""


class SweepFailed(RuntimeError):
    """Some work items failed (e.g. a corrupted checkpoint); the rest were kept."""


class DamagedPoints(RuntimeError):
    """Stored points files that cannot be read (truncated, empty, not Parquet). They count as missing:
    `raysweep run`/`sweep` deletes and recomputes them; read-only commands leave them out and say so."""

    def __init__(self, paths: list[str], job_name: str, where: str = ""):  # job_name: io/runs.locator's words
        self.paths = list(paths)
        shown = ", ".join(self.paths[:5]) + (f" and {len(self.paths) - 5} more" if len(self.paths) > 5 else "")
        super().__init__(f"{len(self.paths)} stored points file(s) of {job_name.split()[0]} cannot be read "
                         f"(truncated or damaged){' in ' + where if where else ''}: {shown}. Their points are left "
                         f"out; `raysweep run {job_name}` (or `raysweep sweep`) recomputes them.")


def in_python(text: str) -> str:
    """A message written for the command line, in the Python API's words: raysweep.open's arguments instead of the
    command's options (errors raised through `raysweep.open` and the Run it returns)."""
    import re

    text = re.sub(r"--set (\S+)=(\S+)", r"overrides=['\1=\2']", text)
    text = re.sub(r"--storage (\S+)", r"storage='\1'", text)
    text = re.sub(r"--replicates (\d+)", r"replicates=\1", text)
    text = re.sub(r"(?:the )?--set overrides?", "the overrides=[...]", text)
    text = text.replace("--partial", "partial=True").replace("--storage", "storage=").replace("--set", "overrides=")
    return text.replace("--replicates", "replicates=")
