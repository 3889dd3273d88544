"""What can go wrong, by kind: the CLI maps each to one paragraph and an exit code."""
from __future__ import annotations

from raysweep.spec import SpecError


class RunNotFound(SpecError):
    """No stored run matches the job and overrides given; the message lists the runs that exist."""


class TrainingFailed(RuntimeError):
    """A training trial failed after Tune's retries; the message carries its error."""


class SweepFailed(RuntimeError):
    """Some work items failed (e.g. a corrupted checkpoint); the rest were kept."""
