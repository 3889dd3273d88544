"""One driver per run: a lease file in the store (`<run>/lease.json`) with a heartbeat.

A second `raysweep run/train/sweep` of the same run waits, saying who holds the lease, until the
first finishes (then it finds the work done and computes nothing) or until the lease goes stale
(its holder was killed: no heartbeat for `ttl` seconds, or at once when the holder was a process on
this machine that no longer exists), which it then takes over. Object stores
have no compare-and-swap here, so two drivers starting within the same second could both win: the
work would still be exactly-once per item, only done twice.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid

from raysweep.io import paths
from raysweep.io.store import Store

TTL = 90.0  # seconds without a heartbeat after which a lease is stale
BEAT = 20.0  # heartbeat period


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Lease:
    def __init__(self, store: Store, run_dir: str, say=None, ttl: float = TTL, beat: float = BEAT,
                 poll: float = 5.0, every: float = 60.0):
        self.store, self.path = store, paths.lease(run_dir)
        self.owner = uuid.uuid4().hex
        self.ttl, self.beat, self.poll, self.every = ttl, beat, poll, every
        self.say = say or (lambda msg: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.depth = 0  # re-entrant: run() holds it across train and sweep

    def _record(self) -> dict:
        return {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}

    def holder(self) -> dict | None:
        """The live lease of another driver, or None (free, stale, damaged or ours)."""
        try:
            rec = self.store.read_json(self.path)
        except FileNotFoundError:
            return None
        except ValueError:  # a damaged lease protects nothing
            return None
        if not isinstance(rec, dict) or rec.get("owner") == self.owner:
            return None
        beat = rec.get("heartbeat")
        if not isinstance(beat, (int, float)) or time.time() - beat > self.ttl:
            return None
        if rec.get("host") == socket.gethostname() and isinstance(rec.get("pid"), int) and not _alive(rec["pid"]):
            return None  # its holder on this machine is gone (killed): no need to wait for the ttl
        return rec

    def acquire(self) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        last_said = -1e9
        while (other := self.holder()) is not None:
            if time.monotonic() - last_said >= self.every:
                age = time.time() - other.get("heartbeat", 0)
                self.say(f"another raysweep (host {other.get('host')}, pid {other.get('pid')}) is working on this run "
                         f"(heartbeat {age:.0f} s ago); waiting for it to finish, then continuing with what it left "
                         f"(Ctrl-C stops waiting)")
                last_said = time.monotonic()
            time.sleep(self.poll)
        self.store.write_json(self.path, self._record())
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.beat):
            try:
                self.store.write_json(self.path, self._record())
            except Exception:  # a store outage: the work itself will report it
                pass

    def release(self) -> None:
        self.depth = max(0, self.depth - 1)
        if self.depth:
            return
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            rec = self.store.read_json(self.path)
            if isinstance(rec, dict) and rec.get("owner") == self.owner:
                self.store.delete(self.path)
        except (FileNotFoundError, ValueError, OSError):
            pass

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
