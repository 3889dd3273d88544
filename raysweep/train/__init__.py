"""Training: the pure-torch loop (loop), instability children (spawn), external checkpoints copied in
(external), checkpoint schedules (schedule) and the Ray Tune driver (tune). Import from the module
that defines a name; this package re-exports nothing."""
