"""Best fit: the node with the least resources left after placement (the FGD paper's BestFit baseline).

"Left" is ``w_cpu`` × the node's free CPU after placement / a CPU norm + ``w_gpu`` × its free GPU share
after placement / a GPU norm. As in the FGD paper's simulator (the Kubernetes score plugin its published
BestFit figures come from):

* the norms are the *largest* node's CPU and GPU capacity in the cluster (``norm="max"``; on the openb
  cluster 128 CPUs and 8 GPUs, the simulator's constants), not each node's own capacity, so a small node
  with little left and a big node with little left compare by what is left in absolute terms;
* both weights are 0.5 and the score is a Kubernetes integer node score: ``(1 - left)`` × 100 truncated to
  an integer (``levels``), so nodes within one point are equal;
* equal scores are broken at random (the Kubernetes scheduler samples uniformly among the top nodes).

``norm="node"`` (each node's own capacity) and ``levels=0`` (exact scores) give the variant this module used
before; on openb it allocated 0.2-0.5 points less than the published BestFit on the sharing-heavy lists.
Inside the node a sharing request takes the GPU with the least free share that fits (the lowest index among
equals; a wholly free GPU only when no partly used one fits), and whole GPUs are the lowest-index free ones.
"""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.policies.base import Request, feasible, placement
from gpufleet.allocator.state import ClusterState, Placement


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

    def __init__(self, seed: int = 0, w_cpu: float = 0.5, w_gpu: float = 0.5, norm: str = "max",
                 levels: int = 100) -> None:
        if norm not in ("max", "node"):
            raise ValueError(f"norm must be 'max' or 'node', not {norm!r}")
        self.seed = seed
        self.w_cpu = w_cpu
        self.w_gpu = w_gpu
        self.norm = norm
        self.levels = levels
        self.rng = np.random.default_rng(seed)

    def left(self, state: ClusterState, req: Request) -> np.ndarray:
        """Weighted share of CPU and GPU left on each node after placement (lower is a better fit)."""
        if self.norm == "max":
            cpu_norm: float | np.ndarray = float(max(int(state.cpu_cap.max()), 1))
            gpu_norm: float | np.ndarray = float(max(int(state.gpu_count.max()), 1) * 1000)
        else:
            cpu_norm = np.maximum(state.cpu_cap, 1).astype(np.float64)
            gpu_norm = np.maximum(state.gpu_count, 1) * 1000.0
        cpu = (state.cpu_free - req.cpu_milli) / cpu_norm * self.w_cpu
        return cpu + (state.tot_free - req.gpu_request_milli) / gpu_norm * self.w_gpu

    def scores(self, state: ClusterState, req: Request) -> np.ndarray:
        """Lower is better: minus the integer node score when ``levels`` is set, else the exact share left."""
        left = self.left(state, req)
        if not self.levels:
            return left
        return -np.trunc((1.0 - left) * self.levels)

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        ok = feasible(state, req)
        if not ok.any():
            return None
        node = pick_min(self.scores(state, req), ok, self.rng)
        return placement(state, node, req, prefer="best")
