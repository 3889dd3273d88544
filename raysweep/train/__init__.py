"""Training: the pure-torch loop (loop), its resume state (state), the parameters `train.freeze` keeps (frozen),
instability children (spawn), curves' bends (bend), data-parallel replicates on Ray Train (ddp, parallel),
external checkpoints copied in (external) in the formats raysweep reads (formats; LoRA adapters: lora),
checkpoint schedules (schedule), the Ray Tune driver (tune) and a short timing of a job's real model (measure:
the rehearsal's projection). Import from the module that defines a name; this package re-exports nothing."""
