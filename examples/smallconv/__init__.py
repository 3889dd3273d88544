"""A user package for raysweep: a small conv net with BatchNorm (nets.build) and a dataset (data.load).
Nothing here imports raysweep except the Splits type the loader returns."""
