"""raysweep/signals.py, state by state, in this process: each signal raised in the main thread (`raise_signal`,
so it arrives now) with SIGINT unblocked and the handlers as a command starts; everything put back after."""
from __future__ import annotations

import signal

import pytest

from raysweep import signals


@pytest.fixture
def clean():
    """SIGINT unblocked and Python's own handlers, as a command starts; the state and handlers put back after."""
    saved = {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, set(signals.STOP_SIGNALS))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    state = dict(signals._STATE)
    yield
    signals._STATE.update(state)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _spin():
    for _ in range(2000):  # Python runs signal handlers between bytecodes: give it many
        pass


def test_importing_defers_a_ctrl_c_to_the_end_of_the_block(clean):
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with signals.deferred():
            signal.raise_signal(signal.SIGINT)
            _spin()
            finished.append(True)
    assert finished == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with signals.deferred():  # a block without a signal raises nothing
        finished.append(True)
    assert finished == [True, True]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an inherited SIG_IGN is respected: nothing deferred or raised
    with signals.deferred():
        signal.raise_signal(signal.SIGINT)
        _spin()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.parametrize("sig", signals.STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_running_each_stop_signal_stops_once_and_names_itself(clean, sig):
    previous = signals.install()
    assert signals.installed() and previous[signal.SIGINT] is signal.default_int_handler
    with pytest.raises(signals.Stopped) as info:
        signal.raise_signal(sig)
        _spin()
    assert info.value.signum == sig and signals.stopped_by() == sig
    assert isinstance(info.value, KeyboardInterrupt)  # every layer that keeps work on Ctrl-C keeps it here too
    for other in signals.STOP_SIGNALS:  # stopping: a second signal is ignored, whatever it is
        assert signal.getsignal(other) is signal.SIG_IGN
    signal.raise_signal(signal.SIGINT)
    _spin()
    signals.restore(previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_importing_while_running_defers_then_stops(clean):
    """A computing command imports torch and Ray after install(): a USR1 then is held to the end of the imports."""
    signals.install()
    done = []
    with pytest.raises(signals.Stopped) as info:
        with signals.deferred():
            signal.raise_signal(signal.SIGUSR1)
            _spin()
            done.append(True)
    assert done == [True] and info.value.signum == signal.SIGUSR1


def test_a_library_borrows_the_handlers_and_gives_them_back(clean):
    """Ray Tune installs its own USR1/SIGINT handlers to end its run quietly; a callback takes ours back inside
    the block, and the block's end restores ours either way."""
    signals.install()
    tune = lambda signum, frame: None  # noqa: E731
    with signals.lent_to_library():
        signal.signal(signal.SIGUSR1, tune)
        signal.signal(signal.SIGINT, tune)
        assert signal.getsignal(signal.SIGUSR1) is tune
    assert all(signal.getsignal(sig) is signals._stop for sig in signals.STOP_SIGNALS)
    with signals.lent_to_library():
        signal.signal(signal.SIGUSR1, tune)
        signals.install()  # the Tune callback's setup
        with pytest.raises(signals.Stopped):
            signal.raise_signal(signal.SIGUSR1)
            _spin()


def test_starting_ray_leaves_the_commands_stop_handlers_in_place(clean, monkeypatch):
    """ray.init makes SIGTERM exit the process (sys.exit, before connecting the driver), and a callback that takes
    the handlers back into Tune's run checked all three: a USR1 from Slurm then ended only Tune's run quietly and
    the command went on to plan sweeps of untrained replicates. After init_ray every stop signal is ours."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from raysweep import connect

    signals.install()
    connect.init_ray(num_cpus=1, log_to_driver=False)
    try:
        assert all(signal.getsignal(sig) is signals._stop for sig in signals.STOP_SIGNALS)
        assert signals.installed()
    finally:
        connect.shutdown_ray()
