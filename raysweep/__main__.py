"""`python -m raysweep ...` and the `raysweep` console script (what the Slurm script runs: `python -u -m raysweep
run ...`). A Ctrl-C that comes while the command is still importing ends it like any other: one line, exit 130.

While the imports run, Ctrl-C is only noted (a handler that records it) and acted on once they are done: a
KeyboardInterrupt raised in the middle of a library's import can land in a `__del__`, a weakref callback or a
bare `except:` and be swallowed (seen: 1 run in a suite went on to the end after a Ctrl-C at 0.1 s)."""
import os
import sys


def _interrupted_while_starting() -> None:
    sys.stderr.write("error: interrupted while starting; nothing was done.\n")
    sys.stderr.flush()
    os._exit(130)


try:
    import signal

    _noted: list[int] = []
    _deferred = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # an inherited SIG_IGN stays
    if _deferred:
        signal.signal(signal.SIGINT, lambda signum, frame: _noted.append(signum))
    from raysweep.cli import main

    if _deferred:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _noted:
        _interrupted_while_starting()
except KeyboardInterrupt:
    _interrupted_while_starting()


def entry() -> None:
    main()


if __name__ == "__main__":
    entry()
