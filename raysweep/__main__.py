"""`python -m raysweep ...` and the `raysweep` console script (what the Slurm script runs: `python -u -m raysweep
run ...`). A Ctrl-C that comes while the command is still importing ends it like any other: one line, exit 130
(held back until the imports are done: signals.deferred)."""
import os
import sys


def _interrupted_while_starting() -> None:
    sys.stderr.write("error: interrupted while starting; nothing was done.\n")
    sys.stderr.flush()
    os._exit(130)


try:
    from raysweep.signals import deferred

    with deferred():
        from raysweep.cli import main
except KeyboardInterrupt:
    _interrupted_while_starting()


def entry() -> None:
    main()


if __name__ == "__main__":
    entry()
