"""Topology-aware gang placement: keep a multi-GPU request inside one NVLink island, else one node.

For every node the wholly free GPUs are counted per NVLink island. A node where one island holds the whole
request scores best, preferring the island (then the node) left with the fewest free GPUs, so big islands
stay whole for big gangs; a node that can hold the request only across islands comes next; nodes are
compared with vectorised counts over nodes × islands. Gangs larger than any node are split by the queue
into per-node members (:attr:`allocator.jobs.JobSpec.gpus_per_node`), each placed by this rule.
"""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.policies.base import Request, choose_gpus, feasible
from gpufleet.allocator.policies.best_fit import BestFit
from gpufleet.allocator.state import FULL, ClusterState, Placement


class TopologyAware:
    name = "topology"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._fallback = BestFit(seed)

    @staticmethod
    def island_free(state: ClusterState, nodes: np.ndarray) -> np.ndarray:
        """Wholly free usable GPUs per (node, island id)."""
        full = (state.gpu_free[nodes] == FULL) & state.gpu_present[nodes] & (state.gpu_health[nodes] == 0)
        isl = state.island[nodes]
        n_isl = int(state.island.max()) + 1
        return np.stack([(full & (isl == k)).sum(axis=1) for k in range(n_isl)], axis=1)

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        if req.num_gpu <= 1:
            return self._fallback.place(state, req)
        nodes = np.flatnonzero(feasible(state, req))
        if len(nodes) == 0:
            return None
        cnt = self.island_free(state, nodes)
        fits = cnt >= req.num_gpu
        leftover_isl = np.where(fits, cnt - req.num_gpu, 10_000).min(axis=1)
        in_island = fits.any(axis=1)
        leftover_node = state.n_full[nodes] - req.num_gpu
        score = np.where(in_island, leftover_isl, 100_000) * 1000 + leftover_node
        node = int(nodes[int(np.argmin(score))])
        return Placement(node, choose_gpus(state, node, req), FULL)
