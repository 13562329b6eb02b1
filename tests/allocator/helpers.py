"""Small clusters for allocator tests."""

from __future__ import annotations

from gpufleet.allocator.state import ClusterState, NodeSpec


def small_cluster(nodes: int = 2, gpus: int = 4, model: str = "A100", islands: int = 2) -> ClusterState:
    per = max(1, gpus // islands)
    return ClusterState.from_specs([
        NodeSpec(f"n{i}", 64000, 262144, gpus, model, 80 << 30, [j // per for j in range(gpus)],
                 [f"GPU-{i}-{j}" for j in range(gpus)])
        for i in range(nodes)
    ])
