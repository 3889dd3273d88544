"""Training: the pure-torch loop (loop), checkpoint schedules (schedule) and the Ray Tune driver (tune)."""
from raysweep.train.loop import is_trained, learning_rate, replicate_seed, train_replicate
from raysweep.train.schedule import checkpoint_steps, iterations_per_epoch
from raysweep.train.tune import train_all

__all__ = ["checkpoint_steps", "is_trained", "iterations_per_epoch", "learning_rate", "replicate_seed", "train_all",
           "train_replicate"]
