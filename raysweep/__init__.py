"""raysweep: distributed loss-landscape interpolation sweeps (Goodfellow 2015, Frankle 2020, Breuel 2015)."""
from raysweep.api import Run, open  # noqa: F401  (raysweep.open is the notebook entry point)

__version__ = "0.1.0"
