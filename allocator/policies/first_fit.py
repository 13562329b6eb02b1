"""First fit: the lowest-numbered node where the request fits; the lowest-numbered GPU that fits on it."""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.policies.base import Request, feasible, placement
from gpufleet.allocator.state import ClusterState, Placement


class FirstFit:
    name = "first_fit"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        ok = feasible(state, req)
        if not ok.any():
            return None
        return placement(state, int(np.argmax(ok)), req, prefer="first")
