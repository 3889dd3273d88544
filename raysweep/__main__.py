"""`python -m raysweep ...` is the `raysweep` command (what the Slurm script runs: `python -u -m raysweep run ...`)."""
from raysweep.cli import app

app(prog_name="raysweep")
