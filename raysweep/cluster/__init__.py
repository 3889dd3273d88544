"""Ray at the edges: start or join (connect), how much a job takes and the GPU policy (policy), checks
where the work runs and provenance (checks); Ray inside a Slurm allocation: the request and what a node
reads back (slurm), the sbatch script (slurm_script) and its steps on each node (slurm_node)."""
from raysweep.cluster.checks import (
                                     check_data_on_worker,
                                     check_storage_reaches_nodes,
                                     gpu_name,
                                     provenance,
)
from raysweep.cluster.connect import (
                                     STORAGE_ENV,
                                     init_ray,
                                     is_local,
                                     joins_cluster,
                                     shutdown_ray,
                                     storage_env,
)
from raysweep.cluster.policy import (
                                     Capacity,
                                     ResourceWatch,
                                     actor_plan,
                                     autoscaler_capacity,
                                     capacity,
                                     decide_gpus,
                                     trial_resources,
)

__all__ = ["STORAGE_ENV", "Capacity", "ResourceWatch", "actor_plan", "autoscaler_capacity", "capacity",
           "check_data_on_worker", "check_storage_reaches_nodes", "decide_gpus", "gpu_name", "init_ray", "is_local",
           "joins_cluster", "provenance", "shutdown_ray", "storage_env", "trial_resources"]
