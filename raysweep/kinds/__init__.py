"""The sweep kinds, one module each (a family of similar ones together), every one registering itself with
real callables (work/kinds.py's `Kind`): lines (init_to_final, step_to_final, final_to_final,
random_to_final, instability) with their sharpness option (sharpness), mode-connecting curves (curve),
trajectories (trajectory: projection, function_map), planes (random_plane, line_and_random, path_surface),
the optimisation path's PCA plane (pca_plane: a whole kind in one file), merges (soup, task_arithmetic,
ties, dare); base holds the planners' `Context`. A kind of your own is a module like these, named in the
job's ``plugins`` (raysweep.plugins.load_plugins imports it, and it registers itself).

Importing this package imports the built-in kind modules only (each imports torch and the report inside its
functions): the registry is light."""
from __future__ import annotations

from raysweep.kinds import curve, lines, merges, pca_plane, planes, sharpness, trajectory  # noqa: F401
