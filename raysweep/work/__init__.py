"""The vocabulary every layer shares, below planning and execution: typed work items and their key grammar
(items), the sweep kinds' registry (kinds), what is stored of a run's work (stored: prepared files' refs,
a sweep folder's data files, the items done) and the training tasks a Tune trial runs (tasks). It imports
the spec and io only. Import from the module that defines a name; this package re-exports nothing."""
