"""Training: the pure-torch loop (loop), its resume state (state), instability children (spawn), curves'
bends (bend), data-parallel replicates on Ray Train (ddp, parallel), external checkpoints copied in
(external), checkpoint schedules (schedule) and the Ray Tune driver (tune). Import from the module that
defines a name; this package re-exports nothing."""
