"""`python -m raysweep ...` and the `raysweep` console script (what the Slurm script runs: `python -u -m raysweep
run ...`). A Ctrl-C that comes while the command is still importing ends it like any other: one line, exit 130."""
import os
import sys

try:
    from raysweep.cli import main
except KeyboardInterrupt:
    sys.stderr.write("error: interrupted while starting; nothing was done.\n")
    sys.stderr.flush()
    os._exit(130)


def entry() -> None:
    main()


if __name__ == "__main__":
    entry()
