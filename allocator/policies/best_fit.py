"""Best fit: the node with the least resources left after placement (the FGD paper's BestFit baseline).

"Left" is the weighted sum of the node's free CPU share and free GPU share after the request is placed
(each over the node's capacity; weights ``w_cpu``, ``w_gpu``). Exact ties are broken at random (a
Kubernetes scheduler picks at random among equally scored nodes). Inside the node, a sharing request
takes the GPU with the least free share that fits.
"""

from __future__ import annotations

import numpy as np

from allocator.policies.base import Request, feasible, placement
from allocator.state import ClusterState, Placement


def pick_min(score: np.ndarray, ok: np.ndarray, rng: np.random.Generator | None) -> int:
    """Index of the lowest score among ``ok`` nodes; ties at random when ``rng`` is given, else lowest index."""
    s = np.where(ok, score, np.inf)
    best = s.min()
    if rng is None:
        return int(np.argmin(s))
    ties = np.flatnonzero(s == best)
    return int(ties[rng.integers(len(ties))]) if len(ties) > 1 else int(ties[0])


class BestFit:
    name = "best_fit"

    def __init__(self, seed: int = 0, w_cpu: float = 1.0, w_gpu: float = 1.0) -> None:
        self.seed = seed
        self.w_cpu = w_cpu
        self.w_gpu = w_gpu
        self.rng = np.random.default_rng(seed)

    def scores(self, state: ClusterState, req: Request) -> np.ndarray:
        cpu_left = (state.cpu_free - req.cpu_milli) / np.maximum(state.cpu_cap, 1)
        gcap = np.maximum(state.gpu_count, 1) * 1000.0
        gpu_left = (state.tot_free - req.gpu_request_milli) / gcap
        return self.w_cpu * cpu_left + self.w_gpu * gpu_left

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        ok = feasible(state, req)
        if not ok.any():
            return None
        node = pick_min(self.scores(state, req), ok, self.rng)
        return placement(state, node, req, prefer="best")
