"""Random: a node drawn uniformly among those where the request fits (the FGD paper's Random baseline).

A sharing request goes to a GPU drawn uniformly among the node's GPUs with enough free share.
"""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.policies.base import Request, feasible
from gpufleet.allocator.state import FULL, ClusterState, Placement


class RandomFit:
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        idx = np.flatnonzero(feasible(state, req))
        if len(idx) == 0:
            return None
        node = int(idx[self.rng.integers(len(idx))])
        if req.num_gpu == 0:
            return Placement(node)
        free = state.usable_free(node)
        if req.sharing:
            cand = np.flatnonzero(free >= req.gpu_milli)
            return Placement(node, (int(cand[self.rng.integers(len(cand))]),), req.gpu_milli)
        cand = np.flatnonzero(free == FULL)
        pick = self.rng.choice(cand, size=req.num_gpu, replace=False)
        return Placement(node, tuple(sorted(int(x) for x in pick)), FULL)
