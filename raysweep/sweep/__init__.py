"""Sweeps: the kinds' registry (kinds), typed work items and their key grammar (items), the pure
planner (planner), the prepare step (prep), execution in-process or on a Ray Data actor pool
(execute), the driver's rounds (rounds), adaptive α (refine) and compaction of stored points
(compact). Import from the module that defines a name; this package re-exports nothing."""
