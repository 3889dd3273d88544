"""Sweeps, the orchestration above the work vocabulary (raysweep.work): the pure planner (planner), curve
sweeps' bends and items (bends), merge sweeps' items (merges), the prepare step (prep), execution in-process
or on a Ray Data actor pool (execute), the driver's rounds (rounds), adaptive α (refine) and compaction of
stored points (compact). Import from the module that defines a name; this package re-exports nothing."""
