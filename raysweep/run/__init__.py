"""A run's flow (core: connect, train, plan, execute, aggregate, report), where its work runs (session),
its tables as of now (tables), what it has done (status) and points exported from it (export). Import from
the module that defines a name; this package re-exports nothing."""
