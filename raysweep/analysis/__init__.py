"""From stored points to numbers: reading a run's points and what made them (scan), curve metrics
(curves), aggregation into the tables with Polars (aggregate), MDS maps of the function space (mds),
and the papers' stochastic toys (toys). Import from the module that defines a name."""
