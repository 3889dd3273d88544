"""Ctrl-C held back while imports run (`ctrl_c_deferred`): standard library only, so `python -m raysweep`
can hold it over its own first import (__main__) and the computing commands over torch's and Ray's (cli_common)."""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def ctrl_c_deferred():
    """A Ctrl-C during the block is only noted, then raised as KeyboardInterrupt when the block ends. Raised
    inside an extension's import it can end the process with SIGABRT instead (torch's pybind11 code calls
    back into Python: "terminate called after throwing an instance of 'pybind11::error_already_set' ...
    KeyboardInterrupt", seen for a Ctrl-C 1 s into `raysweep run`), or be swallowed by a library's
    `__del__`, weakref callback or bare `except:` (seen: a run went on to its end after a Ctrl-C at 0.1 s).
    Outside the main thread, or where SIGINT has another handler (an inherited SIG_IGN stays), it does nothing."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    noted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if noted:
        raise KeyboardInterrupt
