"""The sweep kinds, one module each (a family of similar ones together), every one registering itself with
real callables (work/kinds.py's `Kind`): lines (init_to_final, step_to_final, final_to_final,
random_to_final, instability) with their sharpness option (sharpness), mode-connecting curves (curve),
trajectories (trajectory: projection, function_map), planes (random_plane, line_and_random, path_surface),
the optimisation path's PCA plane (pca_plane: a whole kind in one file), merges (soup, task_arithmetic,
ties, dare); base holds the planners' `Context`. A kind of your own is a module like these, named in the
job's ``plugins`` (`load_plugins`).

Importing this package imports the built-in kind modules only (each imports torch and the report inside its
functions): the registry is light."""
from __future__ import annotations

import importlib
import os
import sys

from raysweep.errors import SpecError
from raysweep.kinds import curve, lines, merges, pca_plane, planes, sharpness, trajectory  # noqa: F401


def load_plugins(names) -> None:
    """Import the job's plugin modules ("package.module"), each registering its kinds when imported; a module
    that does not import is named with the fix."""
    for name in names:
        if os.getcwd() not in sys.path:  # like `python -m`: the folder raysweep runs from holds user code
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or the module's own error at import
            raise SpecError(f"plugins: {name!r} cannot be imported ({type(exc).__name__}: {exc}). Run raysweep from "
                            f"the folder that holds it, or add that folder to PYTHONPATH.") from None
