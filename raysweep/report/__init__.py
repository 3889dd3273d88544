"""What a person reads: Altair charts (charts), one file per paper figure (figures), the headline numbers the
report opens with (headline), the HTML report (html), plane files other tools read (surfaces: loss-landscape's
HDF5, VTK), a plane's iso-lines and 3-D surface (contours), the Hessian's spectrum (spectrum) and
`raysweep show`'s cost estimate (cost)."""
