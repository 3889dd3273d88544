"""Every signal the `raysweep` command handles, owned here (standard library only, so `python -m raysweep` can
use it before its first import). A command's process passes through these states:

    importing   `deferred()`: a Ctrl-C is only noted, then raised as KeyboardInterrupt when the imports end
                (raised inside an extension's import it could end the process with SIGABRT, or be swallowed)
    running     `install()`: SIGINT, SIGTERM and SIGUSR1 each stop the command as Ctrl-C does — `Stopped`
                (a KeyboardInterrupt) is raised once, naming the signal (SIGTERM: a preemption or a
                `kill`; SIGUSR1: Slurm's notice before the time limit)
    borrowed    `lent_to_library()`: a library that installs handlers of its own (Ray Tune: USR1 and SIGINT to
                end its run quietly) gets them for a block; `install()` again inside it (a Tune callback's
                setup) takes them back, and the block's end restores what was there before it
    stopping    `ignore_all()`: a second signal while the command stores what it finished and stops Ray is
                ignored, so the clean-up is never cut short
    restored    `restore(previous)`: the handlers `install()` replaced, put back (tests, the Python API)

`stopped_by()` names the signal that stopped the command (Ray may re-raise a plain KeyboardInterrupt).
"""
from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
_STATE: dict = {"stopped_by": None, "command": False}  # the one place a command's signal state is kept


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM or SIGUSR1): the command stops as on Ctrl-C, keeping everything finished."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deferred():
    """Importing: a stop signal during the block is only noted, then acted on when the block ends — raised as
    KeyboardInterrupt before `install()` (a Ctrl-C while `python -m raysweep` imports itself), as `Stopped` after.
    Outside the main thread, or where SIGINT has a handler of someone else's (an inherited SIG_IGN stays), it
    does nothing."""
    ours = installed()
    if not _main() or not (ours or signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        yield
        return
    held = STOP_SIGNALS if ours else (signal.SIGINT,)
    previous = {sig: signal.getsignal(sig) for sig in held}
    noted: list[int] = []
    for sig in held:
        signal.signal(sig, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        restore(previous)
    if noted and ours:
        _stop(noted[0], None)
    if noted:
        raise KeyboardInterrupt


def _stop(signum, frame):
    ignore_all()  # once: a second signal during the stop is ignored
    _STATE["stopped_by"] = signum
    raise Stopped(signum)


def install() -> dict:
    """Running: every stop signal raises `Stopped` once. Returns the handlers it replaced (for `restore`); in a
    thread other than the main one (where Python installs none) it does nothing."""
    if not _main():
        return {}
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    return previous


def installed() -> bool:
    """Whether the command's stop handlers are in place (one of them is enough: a library may have replaced
    another — ray.init makes SIGTERM exit the process — and `install()` takes them all back)."""
    return any(signal.getsignal(sig) is _stop for sig in STOP_SIGNALS)


def ignore_all() -> None:
    """Stopping: the stop signals are ignored from now on."""
    if _main():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def restore(previous: dict) -> None:
    """Restored: put back handlers `install()` (or a library) replaced."""
    if _main():
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def lent_to_library():
    """Borrowed: a library may install its own handlers during the block; afterwards ours are what they were."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if _main() else {}
    try:
        yield
    finally:
        restore(previous)


def stopped_by() -> int | None:
    return _STATE["stopped_by"]


def mark_command() -> None:
    """This process is the `raysweep` command itself (not a test runner's or a notebook's): its exit may skip the
    interpreter's teardown once it stopped (cli_common)."""
    _STATE["command"] = True


def is_command() -> bool:
    return _STATE["command"]
