"""Adapter that lets any allocator policy place the digital twin's jobs (the twin's ``Placer`` protocol).

The twin passes a job (``n_gpus``, ``share``, ``duration``) and a placement view (free share per GPU, healthy
mask, node slices); this adapter mirrors the view into a :class:`ClusterState` (thousandths, health,
per-GPU failure risk) and asks the policy. It imports nothing from ``simulator`` (the dependency rule
points the other way); it only relies on those attribute names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gpufleet.allocator.policies.base import Policy, Request
from gpufleet.allocator.state import FULL, ClusterState, NodeSpec


class PolicyPlacer:
    def __init__(self, policy: Policy, risk: Callable[[], np.ndarray] | np.ndarray | None = None,
                 model: str = "gpu") -> None:
        self.policy = policy
        self.name = f"allocator:{policy.name}"
        self.risk = risk
        self.model = model
        self.state: ClusterState | None = None
        self._slot: np.ndarray | None = None

    def _build(self, view: Any) -> ClusterState:
        specs = [NodeSpec(f"node{i}", 10**9, 10**9, sl.stop - sl.start, self.model)
                 for i, sl in enumerate(view.node_slices)]
        st = ClusterState.from_specs(specs)
        self._slot = np.concatenate([np.arange(sl.stop - sl.start) for sl in view.node_slices])
        return st

    def sync(self, view: Any) -> ClusterState:
        """Mirror the twin's view (free shares, health, risk) into the cluster state."""
        if self.state is None:
            self.state = self._build(view)
        st = self.state
        assert self._slot is not None
        node = np.asarray(view.node_of)
        st.gpu_free[node, self._slot] = np.rint(np.asarray(view.free) * FULL).astype(np.int32)
        st.gpu_health[node, self._slot] = np.where(np.asarray(view.healthy), 0, 3)
        if self.risk is not None:
            r = self.risk() if callable(self.risk) else self.risk
            st.risk[node, self._slot] = r
        st.refresh()
        return st

    def place(self, job: Any, view: Any) -> list[int] | None:
        st = self.sync(view)
        share = float(job.share)
        n = int(job.n_gpus)
        req = Request(0, 0, n, FULL if share >= 1.0 - 1e-9 else max(1, round(share * FULL)),
                      duration_s=float(job.duration))
        p = self.policy.place(st, req)
        if p is None:
            return None
        start = view.node_slices[p.node].start
        return [int(start + g) for g in p.gpus]


def measure(twin: Any, start: float, days: float, sample_s: float = 3600.0,
            hazard: Callable[[], np.ndarray] | None = None) -> dict[str, float]:
    """Run a twin for ``days`` and measure what failures cost the jobs placed in it.

    Returns GPU-hours lost to failures (GPU share × time run before the interrupt, the twin's jobs keep no
    checkpoint), interrupted jobs, the time-weighted mean allocated share of the fleet, and the GPU-hours
    delivered by completed jobs. Only the twin's public attributes (``begin``, ``advance``, ``cluster``,
    ``n``) are used. With ``hazard`` (true failure rate per GPU per second), also the *expected* GPU-hours
    lost: for every job, its GPU-hours per hour (GPUs × share) × the summed hazard of its GPUs (any one
    failing stops the job) × (time run)² / 2; a low-variance companion of the realised loss, which a handful
    of failures decides. It knows only the onset hazard, not precursors already running, so it cannot
    credit a telemetry risk.
    """
    twin.begin(start)
    t = start
    alloc = []
    end = start + days * 86400.0
    while t < end - 1e-9:
        t = min(end, t + sample_s)
        twin.advance(t)
        alloc.append(float(np.clip(twin.cluster.used, 0.0, 1.0).sum()) / twin.n)
    lost = done = expected = 0.0
    interrupted = 0
    h = hazard() if hazard is not None else None
    for job in [*twin.cluster.finished, *twin.cluster.running.values()]:
        if h is not None and job.start is not None and job.start >= start:
            ran = (min(job.end, end) if job.end is not None else end) - job.start
            # any of its GPUs failing stops the whole job: n_gpus x share x (sum of the GPUs' hazards)
            expected += job.n_gpus * job.share * float(sum(h[g] for g in job.gpus)) * ran * ran / 2 / 3600.0
        if job.state == "running":
            continue
        if job.start is None or job.end is None or job.start < start:
            continue
        gh = job.n_gpus * job.share * (job.end - job.start) / 3600.0
        if job.state == "interrupted":
            lost += gh
            interrupted += 1
        elif job.state == "done":
            done += gh
    return {"gpu_hours_lost": lost, "interrupted_jobs": float(interrupted),
            "allocation_mean": float(np.mean(alloc)) if alloc else 0.0, "gpu_hours_done": done,
            "expected_gpu_hours_lost": expected}
