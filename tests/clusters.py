"""Multi-node Ray clusters on this machine for the tests' subprocess scripts (no side effects on import)."""


def local_cluster(workers: int = 2):
    """A Ray cluster on this machine: a head with 0 CPUs (it runs no work) and 1-CPU worker nodes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(workers):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster
