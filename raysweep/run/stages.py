"""The rehearsal's stages: each timed, printed as it passes, named in a failure, and under a deadline that
says what it was waiting for when it ran out — a rehearsal never hangs.

A stage sets what it waits on (`stages.waiting = "a node with 8 CPUs for the projection"`) before each
blocking step; when the deadline passes, SIGALRM interrupts the wait (Ray's waits return to Python to
check signals, as they do for Ctrl-C) and the stage fails with that text. Failures are of two kinds:

- a refusal a user can act on (RehearsalFailed, SpecError, StoreError, DatasetMissing, a missed deadline):
  one paragraph naming the stage and the fix, exit 2;
- anything else is a bug: it propagates with its traceback (RAYSWEEP_DEBUG=1 prints it), the stage named in
  a note on the exception.
"""
from __future__ import annotations

import resource
import signal
import threading
import time

from raysweep.errors import DatasetMissing, RehearsalFailed, SpecError, StoreError
from raysweep.progress import say

REFUSALS = (SpecError, StoreError, DatasetMissing)


class Deadline(BaseException):
    """A stage ran past its deadline (a BaseException, so that no `except Exception` of the stage eats it)."""


def _on_alarm(signum, frame):
    raise Deadline()


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Stages:
    """Times each stage, prints it as it passes, holds it to its deadline and names it in a failure."""

    def __init__(self, timeout: float = 1800.0, echo=say):
        self.rows: list[dict] = []
        self.timeout = timeout
        self.waiting = ""
        self.echo = echo

    def run(self, name: str, fn, fix: str = "", timeout: float | None = None):
        """`fn() -> (value, note)`; returns the value. `timeout`: this stage's deadline in seconds (the
        rehearsal's --stage-timeout by default)."""
        limit = self.timeout if timeout is None else timeout
        self.waiting = f"stage {name}'s own work"
        t = time.perf_counter()
        armed = limit > 0 and threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGALRM, _on_alarm) if armed else None
        if armed:
            signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            out, note = fn()
        except Deadline:
            raise RehearsalFailed(
                f"the rehearsal failed at stage {name}: it did not finish in {limit:g} s, waiting for "
                f"{self.waiting}. Fix: {fix or 'see what it waited for'}; a longer deadline is "
                f"--stage-timeout SECONDS.") from None
        except RehearsalFailed:
            raise
        except REFUSALS as exc:  # input a user can fix: the stage, its cause and the fix, exit 2
            cause = " ".join(str(exc).split()) or type(exc).__name__
            raise RehearsalFailed(f"the rehearsal failed at stage {name}: {cause}{' Fix: ' + fix if fix else ''}") \
                from None
        except Exception as exc:  # a bug: kept whole, with the stage it happened in
            exc.add_note(f"(in the rehearsal's stage {name})")
            raise
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - t
        self.rows.append({"stage": name, "seconds": round(seconds, 2), "note": note,
                          "driver_peak_mib": round(peak_mib(), 1)})
        self.echo(f"rehearsal: [{name}] ok in {seconds:.1f} s — {note}")
        return out
