"""What a person reads: Altair charts, the HTML report, and `raysweep show`'s cost estimate."""
