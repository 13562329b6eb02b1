"""Slurm power-saving advice: should these nodes be powered up (ResumeProgram) or down (SuspendProgram)?

Slurm's power saving calls ``SuspendProgram <hostlist>`` for nodes idle longer than ``SuspendTime`` and
``ResumeProgram <hostlist>`` when jobs need powered-down nodes. gpufleet's script
(``deploy/slurm/gpufleet_power.py``) asks the service first (``POST /integrations/slurm/power``):

* **suspend**: the autoscaling advice (:func:`allocator.autoscale.recommend`, stabilised like Kubernetes'
  HPA over the recent pending / idle GPU history) says how many nodes to keep powered; only nodes beyond
  that are approved, the riskiest first (a node likely to fail is the one to switch off).
* **resume**: every node is approved except those whose predicted failure risk reaches ``threshold``
  (Slurm then marks them DOWN after ``ResumeTimeout`` and places the jobs elsewhere).

Without history yet (the service just started) the answer approves what Slurm asked.

Contract (JSON): request ``{"action": "suspend"|"resume", "nodes": ["gpu01", ...]}``; answer
``{"approve": [...], "deny": {"gpu02": "why"}, "recommended_nodes": n|null, "reason": "..."}``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.allocator.autoscale import AutoscaleSettings, recommend
from gpufleet.exporter.errors import InputError

PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/integrations/slurm/power"): frozenset({"admin"}),
}


@dataclass(frozen=True)
class PowerDecision:
    approve: list[str]
    deny: dict[str, str]
    recommended_nodes: int | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"approve": self.approve, "deny": self.deny, "recommended_nodes": self.recommended_nodes,
                "reason": self.reason}


@dataclass
class PowerAdvisor:
    """Feed :meth:`observe` every ``step_s`` (pending GPUs, idle GPUs, powered nodes); ask :meth:`decide`."""

    settings: AutoscaleSettings = field(default_factory=AutoscaleSettings)
    step_s: float = 60.0
    threshold: float = 0.5
    node_risk: Callable[[], Mapping[str, float]] | None = None
    """Worst GPU risk per node (e.g. :func:`gpufleet.integrations.remediation.node_risk` of the scores)."""
    history: int = 240
    _pending: deque[float] = field(default_factory=deque, init=False)
    _idle: deque[float] = field(default_factory=deque, init=False)
    _nodes: deque[int] = field(default_factory=deque, init=False)

    def observe(self, pending_gpus: float, idle_gpus: float, powered_nodes: int) -> None:
        self._pending.append(float(pending_gpus))
        self._idle.append(float(idle_gpus))
        self._nodes.append(int(powered_nodes))
        for q in (self._pending, self._idle, self._nodes):
            while len(q) > self.history:
                q.popleft()

    def decide(self, action: str, nodes: Sequence[str]) -> PowerDecision:
        if action not in ("suspend", "resume"):
            raise InputError(f"power action must be suspend or resume, not {action!r}")
        nodes = list(dict.fromkeys(nodes))
        risk = dict(self.node_risk()) if self.node_risk is not None else {}
        if action == "resume":
            deny = {n: f"gpufleet: failure risk {risk[n]:.2f} reaches {self.threshold:.2f}"
                    for n in nodes if risk.get(n, 0.0) >= self.threshold}
            return PowerDecision([n for n in nodes if n not in deny], deny, None,
                                 "resume every node not predicted to fail")
        if not self._pending:
            return PowerDecision(nodes, {}, None, "no demand history yet: Slurm's choice stands")
        powered = int(self._nodes[-1])
        rec = recommend(list(self._pending), list(self._idle), powered, self.step_s, self.settings,
                        nodes_history=list(self._nodes))
        may = max(0, powered - rec.nodes)
        order = sorted(nodes, key=lambda n: -risk.get(n, 0.0))
        approve = order[:may]
        deny = {n: f"gpufleet: autoscaling advice keeps {rec.nodes} of {powered} nodes powered ({rec.reason})"
                for n in order[may:]}
        return PowerDecision([n for n in nodes if n in approve], deny, rec.nodes, rec.reason)


def power_router(advisor: PowerAdvisor | Callable[[], PowerAdvisor]) -> Any:
    """``POST /integrations/slurm/power`` for the lead to mount (needs a token with a role in PERMISSIONS)."""
    from fastapi import APIRouter, Body

    router = APIRouter(tags=["slurm"])

    @router.post("/integrations/slurm/power", summary="Slurm ResumeProgram / SuspendProgram advice")
    def power(req: dict[str, Any] = Body(...)) -> dict[str, Any]:
        adv = advisor if isinstance(advisor, PowerAdvisor) else advisor()
        nodes = req.get("nodes")
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise InputError("nodes must be a list of node names")
        return adv.decide(str(req.get("action", "")), nodes).to_json()

    return router
