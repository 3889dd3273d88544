"""A run's flow (core: connect, train, plan, execute, aggregate, report), where its work runs (session),
its tables as of now (tables), what it has done (status), points exported from it (export), and the
rehearsal of its plan with a stand-in model (rehearse; the stand-in: standin), one function per stage
(rehearsal_stages) under deadlines (stages), the probes it sends to every node (probes) and its projection
of the real run (projection). Import from the module that defines a name; this package re-exports nothing."""
