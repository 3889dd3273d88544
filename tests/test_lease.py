"""One driver per run: a second one waits for the first's lease, takes over a stale one, and then
finds the work done instead of repeating it."""
import threading
import time

from raysweep.api import Run
from raysweep.io import paths
from raysweep.io.lease import Lease
from raysweep.train.loop import train_replicate


def test_a_second_driver_waits_for_the_first(store):
    said = []
    first = Lease(store, "job/h", ttl=30, beat=0.2)
    second = Lease(store, "job/h", say=said.append, ttl=30, beat=0.2, poll=0.05, every=0.0)
    first.acquire()
    got = threading.Event()
    t = threading.Thread(target=lambda: (second.acquire(), got.set()))
    t.start()
    time.sleep(0.5)
    assert not got.is_set() and said and "another raysweep" in said[0] and "waiting" in said[0]
    first.release()
    t.join(5)
    assert got.is_set() and store.read_json(paths.lease("job/h"))["owner"] == second.owner
    second.release()
    assert not store.exists(paths.lease("job/h"))


def test_a_stale_lease_is_taken_over(store):
    dead = Lease(store, "job/h", ttl=0.3, beat=100)  # its holder was SIGKILLed: no more heartbeats
    dead.acquire()
    dead._stop.set()
    time.sleep(0.4)
    alive = Lease(store, "job/h", ttl=0.3, poll=0.05)
    start = time.monotonic()
    alive.acquire()
    assert time.monotonic() - start < 2 and store.read_json(paths.lease("job/h"))["owner"] == alive.owner
    alive.release()


def test_the_waiting_driver_computes_nothing_the_first_did(tiny_job, store):
    import raysweep.io.lease as lease_mod

    first = Run(tiny_job, store)
    first.lease.acquire()
    second = Run(tiny_job, store)
    second._lease = lease_mod.Lease(store, second.dir, poll=0.05)
    done = {}
    t = threading.Thread(target=lambda: done.update(trained=second.train(progress=False)))
    t.start()
    for k in first.replicates:  # the first driver trains while the second waits
        train_replicate(tiny_job, k, store)
    assert t.is_alive()
    first.lease.release()
    t.join(30)
    assert done["trained"] == []  # it found both replicates trained


def test_a_lease_whose_process_is_gone_is_taken_at_once(store):
    """A SIGKILLed driver on this machine leaves a fresh-looking lease: its pid no longer exists."""
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.write_json(paths.lease("job/h"), {"owner": "x", "host": socket.gethostname(), "pid": int(gone.stdout),
                                            "heartbeat": time.time()})
    lease = Lease(store, "job/h", ttl=3600, poll=0.05)
    start = time.monotonic()
    lease.acquire()
    assert time.monotonic() - start < 1
    lease.release()
