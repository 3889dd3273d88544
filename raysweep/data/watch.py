"""A training stream that never waits in silence: when no batch has come for STALL seconds
($RAYSWEEP_STALL_S), say why — what the cluster's CPUs are doing and what decoding waits for — and
say it again every STALL seconds until batches flow."""
from __future__ import annotations

import os
import sys
import threading
import time

from raysweep.connect import DECODE_CPUS


def stall_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get("RAYSWEEP_STALL_S", "60")))
    except ValueError:
        return 60.0


def diagnosis(waited: float, what: str) -> str:
    """One paragraph: how long `what` has waited, the cluster's CPUs, and the likely fix."""
    import ray

    try:
        total, free = ray.cluster_resources(), ray.available_resources()
    except Exception:  # Ray going down under us: say what is known
        return f"no batch from {what} for {waited:.0f} s (Ray does not answer)"
    cpus, idle = float(total.get("CPU", 0)), float(free.get("CPU", 0))
    text = (f"no batch from {what} for {waited:.0f} s: the cluster has {idle:g} of {cpus:g} CPUs free")
    if idle < DECODE_CPUS:
        return (f"{text}, and a decode task needs {DECODE_CPUS:g} — the training ranks (or other work) hold the "
                f"rest, so decoding waits. Give decoding a CPU: lower resources.cpus_per_trial (e.g. 0.5), run fewer "
                f"replicates at once, or add a CPU node type to the cluster.")
    return (f"{text}, so decoding can run: reading the packed shards is slow (the store's throughput, "
            f"or a large data.shuffle_window filling), or a decode task failed and is retried (the Ray "
            f"dashboard's Jobs page lists the tasks).")


class Watched:
    """Iterate `batches`; a daemon thread logs `diagnosis` while none has come for STALL seconds."""

    def __init__(self, batches, what: str, stall: float | None = None, say=None):
        self.batches, self.what = batches, what
        self.stall = stall_seconds() if stall is None else stall
        self.say = say or (lambda msg: print(f"raysweep: {msg}", file=sys.stderr, flush=True))  # a worker's logging
        # may be Ray Train's, not the console's: stderr reaches the driver's console
        self._last = time.monotonic()
        self._stop = threading.Event()

    def _loop(self) -> None:
        told = self._last
        while not self._stop.wait(min(5.0, self.stall / 4)):
            now = time.monotonic()
            if now - self._last >= self.stall and now - told >= self.stall:
                self.say(diagnosis(now - self._last, self.what))
                told = now

    def __iter__(self):
        thread = threading.Thread(target=self._loop, daemon=True)
        self._last = time.monotonic()
        thread.start()
        try:
            for b in self.batches:
                self._last = time.monotonic()
                yield b
                self._last = time.monotonic()  # the trainer's step is not the stream's wait
        finally:
            self._stop.set()
