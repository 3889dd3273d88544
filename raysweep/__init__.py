"""raysweep: distributed loss-landscape interpolation sweeps (Goodfellow 2015, Frankle 2020, Breuel 2015).

Packages, lowest first: errors (what can go wrong), spec (the typed job), io (the store and every path),
work (items, the kinds' registry, training tasks), models, lm and plugins (networks, transformers language
models, user code), connect (start or
join Ray), data, evaluate and train (plain torch), analysis and report (tables, figures), kinds (the sweep
kinds, one module each, registered in work's registry), cluster (Ray at the edges, Slurm), sweep (planning and
executing items), run (a run's flow). Above them: api (the Python API), validate (checks needing user code),
jobs (the built-in job files), progress (bars and log lines), signals (SIGINT, SIGTERM, SIGUSR1: the command's
handling of each, in one place), and the `raysweep` command: cli, cli_common, cli_data, cli_interpolate,
cli_output (tables and files out), cli_slurm, cli_toys, __main__ (`python -m raysweep`)."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """`raysweep.open` and `raysweep.Run` (the notebook entry points), imported when first used: the command's
    start-up (`raysweep --help`, `raysweep jobs`) loads neither Polars, pyarrow, torch nor Ray."""
    if name in ("open", "Run"):
        from raysweep import api

        return getattr(api, name)
    raise AttributeError(f"module 'raysweep' has no attribute {name!r}")
