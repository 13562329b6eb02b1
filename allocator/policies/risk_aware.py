"""Risk-aware placement: keep long jobs off GPUs with a high predicted failure risk.

Each node's cost is ``risk_weight`` × the predicted failure probability of the GPUs the request would get
(the lowest-risk usable GPUs on the node) × the job's expected length in hours (capped at ``max_hours``),
plus the best-fit term (GPU share left on the node after placement). Short jobs barely feel the risk term
and fill risky GPUs; long jobs move to safe ones. With no risk known (all zero) this is best fit. The risk
comes from the failure predictor (``ClusterState.set_risk``) for one horizon.

The helpers below turn that risk into the *expected GPU-hours lost* that the composite default's risk term
charges (:mod:`allocator.policies.composite`): a GPU's risk ``r`` is its probability of failing within the
horizon the risk came with (``ClusterState.risk_horizon_s``, set from the :class:`models.failure_base.Risk`
values the predictor gives, ``[serve] risk_horizon``), read as a constant hazard ``-ln(1 - r) / horizon_h``
per hour; a job taking GPUs ``G`` (share ``s`` of each) for ``h`` hours stops when any of them fails, with
probability ``p_any = 1 - exp(-h * sum of their hazards)``, and has ``|G| * s * h`` GPU-hours at stake
(:func:`expected_loss`; the twin's jobs keep no checkpoint, so the work at stake is the whole job).
"""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.policies.base import Request, feasible
from gpufleet.allocator.state import FULL, ClusterState, Placement
from gpufleet.models import failure_base


def hazard_per_hour(risk: np.ndarray, horizon_s: float) -> np.ndarray:
    """Constant failure rate per hour that gives probability ``risk`` of failing within ``horizon_s``."""
    return failure_base.hazard_per_hour(risk, horizon_s)


def expected_loss(stake: np.ndarray | float, hazard_sum: np.ndarray | float, hours: float) -> np.ndarray:
    """Expected GPU-hours lost: GPU-hours at stake (``stake`` GPUs-worth × ``hours``) × probability that any
    of the GPUs (summed hazard per hour ``hazard_sum``) fails during the job."""
    return np.asarray(np.asarray(stake) * hours * -np.expm1(-np.asarray(hazard_sum) * hours))


class RiskAware:
    name = "risk_aware"

    def __init__(self, seed: int = 0, risk_weight: float = 10.0, max_hours: float = 168.0) -> None:
        self.seed = seed
        self.risk_weight = risk_weight
        self.max_hours = max_hours

    def place(self, state: ClusterState, req: Request) -> Placement | None:
        nodes = np.flatnonzero(feasible(state, req))
        if len(nodes) == 0:
            return None
        left = (state.tot_free[nodes] - req.gpu_request_milli) / (np.maximum(state.gpu_count[nodes], 1) * 1000.0)
        if req.num_gpu == 0:
            return Placement(int(nodes[int(np.argmin(left))]))
        free = state.gpu_free[nodes]
        usable = state.gpu_present[nodes] & (state.gpu_health[nodes] == 0)
        usable &= free >= req.gpu_milli if req.sharing else free == FULL
        risk = np.where(usable, state.risk[nodes], np.inf)
        order = np.argsort(risk, axis=1, kind="stable")[:, : req.num_gpu]
        got = np.take_along_axis(risk, order, axis=1)
        hours = min(self.max_hours, (req.duration_s or 3600.0) / 3600.0)
        # chance that at least one of the GPUs fails during the job (its risks over the job's own length),
        # scaled by that length
        lam = np.where(np.isfinite(got), hazard_per_hour(np.where(np.isfinite(got), got, 0.0), state.risk_horizon_s),
                       np.inf)
        p_any = -np.expm1(-lam.sum(axis=1) * hours)
        cost = self.risk_weight * p_any * hours + left
        k = int(np.argmin(cost))
        if req.sharing:
            cand = np.flatnonzero(usable[k])
            best = cand[np.lexsort((free[k, cand], state.risk[nodes[k], cand]))[0]]
            return Placement(int(nodes[k]), (int(best),), req.gpu_milli)
        return Placement(int(nodes[k]), tuple(sorted(int(g) for g in order[k])), FULL)
