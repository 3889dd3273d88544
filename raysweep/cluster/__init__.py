"""Ray at the edges: start or join (connect), how much a job takes and the GPU policy (policy), checks
where the work runs and provenance (checks); Ray inside a Slurm allocation: the request and what a node
reads back (slurm), the sbatch script (slurm_script) and its steps on each node (slurm_node). Import from
the module that defines a name; this package re-exports nothing (`raysweep slurm` starts without pyarrow
or Ray)."""
