"""Risk-driven remediation shared by Slurm (drain / resume) and Kubernetes (taint or cordon / undo).

Each :meth:`Remediator.step` takes the failure risk per GPU uuid and horizon, turns it into a risk per node
(the worst GPU on it) and:

* holds a node out of scheduling when its risk reaches ``threshold`` (worst first), but never so many
  that more than ``max_share`` of the cluster's nodes are out at once (nodes drained or down for other
  reasons count too: capacity is what the limit protects);
* releases a node gpufleet holds when its risk falls below ``resume_below`` (hysteresis, so a risk
  hovering at the threshold does not flap);
* never touches a node someone else took out (an operator's drain, a down node);
* after an operator's :meth:`Remediator.release` (the "operator says so" path), leaves that node alone for
  ``operator_override_s`` seconds.

Which nodes gpufleet holds is read back from the manager each step (Slurm: the drain reason starts with
``gpufleet:``; Kubernetes: gpufleet's taint or annotation), so a restart loses nothing. Every decision is
an :class:`Action` handed to the ``audit`` callback, in dry-run mode too (outcome ``dry-run``; nothing
changes). Manager errors become ``error: <message>`` actions; the step goes on with the other nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpufleet.exporter.errors import ConfigError, GpufleetError, NotFound

REASON_PREFIX = "gpufleet:"


@dataclass(frozen=True, slots=True)
class ManagedNode:
    """One node as the cluster manager sees it."""

    name: str
    held: bool
    """gpufleet holds it out of scheduling (its drain / taint)."""
    unavailable: bool
    """Out of scheduling for any reason (gpufleet's hold, an operator's drain or cordon, down)."""
    uuids: tuple[str, ...] = ()
    """GPU uuids on the node where the manager knows them."""


class NodeManager(Protocol):
    """What a cluster manager must do for the remediator."""

    name: str

    def managed_nodes(self) -> list[ManagedNode]: ...

    def hold(self, node: str, reason: str, risk: float, horizon: str) -> None: ...

    def release(self, node: str) -> None: ...


@dataclass(frozen=True)
class RemediationPolicy:
    threshold: float = 0.5
    """Hold a node when its worst GPU's risk at ``horizon`` reaches this."""
    resume_below: float = 0.25
    """Release a node gpufleet holds when its risk falls below this."""
    horizon: str = "24h"
    max_share: float = 0.1
    """At most this share of the nodes may be out of scheduling at once (rounded down)."""
    dry_run: bool = False
    operator_override_s: float = 86400.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.resume_below <= self.threshold <= 1.0:
            raise ConfigError("remediation needs 0 <= resume_below <= threshold <= 1")
        if not 0.0 <= self.max_share <= 1.0:
            raise ConfigError("remediation max_share must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class Action:
    """One remediation decision (what the audit log records)."""

    ts: float
    manager: str
    kind: str
    """``hold`` (drain / taint), ``release`` (resume / untaint), ``skip`` (wanted, refused by the limit) or
    ``label`` (risk band, Kubernetes)."""
    node: str
    risk: float | None
    horizon: str
    reason: str
    outcome: str
    """``done``, ``dry-run``, ``refused: ...`` or ``error: <message>``."""
    actor: str = "gpufleet"

    def detail(self) -> dict[str, Any]:
        return {"manager": self.manager, "risk": self.risk, "horizon": self.horizon, "reason": self.reason}


def audit_fields(a: Action) -> dict[str, Any]:
    """Keyword arguments for ``gpufleet.api.audit.AuditLog.append`` describing one action."""
    verb = {"slurm": {"hold": "drain", "release": "resume"},
            "kubernetes": {"hold": "taint", "release": "untaint"}}.get(a.manager, {}).get(a.kind, a.kind)
    return {"user": a.actor, "role": "system" if a.actor == "gpufleet" else "operator",
            "action": f"{a.manager}.{verb}", "target": f"node:{a.node}", "outcome": a.outcome,
            "source": "remediator", "detail": a.detail(), "ts": a.ts}


def node_risk(risk_by_uuid: Mapping[str, Mapping[str, float]], node_of: Mapping[str, str],
              horizon: str) -> dict[str, float]:
    """Worst GPU risk at ``horizon`` per node (GPUs without a known node are left out)."""
    out: dict[str, float] = {}
    for uuid, by_h in risk_by_uuid.items():
        node = node_of.get(uuid)
        r = by_h.get(horizon)
        if node is None or r is None or not math.isfinite(r):
            continue
        out[node] = max(out.get(node, 0.0), float(r))
    return out


@dataclass
class Remediator:
    manager: NodeManager
    policy: RemediationPolicy = field(default_factory=RemediationPolicy)
    audit: Callable[[Action], None] | None = None
    node_of: Callable[[], Mapping[str, str]] | None = None
    """uuid → node name (e.g. from the exporter's devices); merged with what the manager knows."""
    overrides: dict[str, float] = field(default_factory=dict)
    """node → until when an operator's release keeps gpufleet away."""
    last: list[Action] = field(default_factory=list)

    def _emit(self, actions: list[Action], a: Action) -> None:
        actions.append(a)
        if self.audit is not None:
            self.audit(a)

    def reason(self, risk: float) -> str:
        p = self.policy
        return f"{REASON_PREFIX} failure risk {risk:.2f} within {p.horizon} (threshold {p.threshold:.2f})"

    def step(self, risk_by_uuid: Mapping[str, Mapping[str, float]], now: float) -> list[Action]:
        """One remediation pass; the actions taken (or, in dry-run, that would be taken)."""
        p = self.policy
        nodes = self.manager.managed_nodes()
        node_of = {u: n.name for n in nodes for u in n.uuids}
        if self.node_of is not None:
            node_of.update(self.node_of())
        risk = node_risk(risk_by_uuid, node_of, p.horizon)
        self.overrides = {n: t for n, t in self.overrides.items() if t > now}
        limit = math.floor(p.max_share * len(nodes) + 1e-9)
        out_now = sum(1 for n in nodes if n.unavailable)
        actions: list[Action] = []
        mgr = self.manager.name
        # releases first: they free room under the limit
        for n in nodes:
            r = risk.get(n.name)
            if n.held and r is not None and r < p.resume_below:
                why = f"{REASON_PREFIX} failure risk {r:.2f} fell below {p.resume_below:.2f}"
                outcome = self._do(lambda n=n: self.manager.release(n.name))  # type: ignore[misc]
                if outcome == "done":
                    out_now -= 1
                self._emit(actions, Action(now, mgr, "release", n.name, r, p.horizon, why, outcome))
        want = sorted((n for n in nodes if not n.unavailable and risk.get(n.name, 0.0) >= p.threshold
                       and n.name not in self.overrides), key=lambda n: -risk[n.name])
        for n in want:
            r = risk[n.name]
            if out_now + 1 > limit:
                why = (f"{self.reason(r)}; not held: {out_now} of {len(nodes)} nodes already out, "
                       f"max_share {p.max_share:g} allows {limit}")
                self._emit(actions, Action(now, mgr, "skip", n.name, r, p.horizon, why, "refused: limit"))
                continue
            outcome = self._do(lambda n=n, r=r: self.manager.hold(n.name, self.reason(r), r, p.horizon))  # type: ignore[misc]
            if outcome in ("done", "dry-run"):
                out_now += 1
            self._emit(actions, Action(now, mgr, "hold", n.name, r, p.horizon, self.reason(r), outcome))
        self._label_bands(risk, now, actions)
        self.last = actions
        return actions

    def band(self, risk: float) -> str:
        p = self.policy
        return "high" if risk >= p.threshold else "medium" if risk >= p.resume_below else "low"

    def _label_bands(self, risk: Mapping[str, float], now: float, actions: list[Action]) -> None:
        """Managers that label nodes (Kubernetes) get ``low`` / ``medium`` / ``high`` where it changed."""
        get, put = getattr(self.manager, "bands", None), getattr(self.manager, "set_band", None)
        if get is None or put is None or not risk:
            return
        try:
            current = get()
        except GpufleetError as exc:
            self._emit(actions, Action(now, self.manager.name, "label", "*", None, self.policy.horizon,
                                       "read risk bands", f"error: {exc}"))
            return
        for node, r in sorted(risk.items()):
            b = self.band(r)
            if node in current and current[node] != b:
                outcome = self._do(lambda node=node, b=b: put(node, b))  # type: ignore[misc]
                self._emit(actions, Action(now, self.manager.name, "label", node, r, self.policy.horizon,
                                           f"{REASON_PREFIX} risk band {b}", outcome))

    def release(self, node: str, *, operator: str, now: float) -> Action:
        """An operator brings a node gpufleet holds back; gpufleet leaves it alone for a while."""
        nodes = {n.name: n for n in self.manager.managed_nodes()}
        if node not in nodes:
            raise NotFound(f"{self.manager.name} has no node {node!r}")
        self.overrides[node] = now + self.policy.operator_override_s
        why = f"{REASON_PREFIX} released by operator {operator}"
        outcome = self._do(lambda: self.manager.release(node)) if nodes[node].held else "refused: not held by gpufleet"
        actions: list[Action] = []
        self._emit(actions, Action(now, self.manager.name, "release", node, None, self.policy.horizon, why,
                                   outcome, actor=operator))
        return actions[0]

    def _do(self, fn: Callable[[], None]) -> str:
        if self.policy.dry_run:
            return "dry-run"
        try:
            fn()
        except GpufleetError as exc:
            return f"error: {exc}"
        return "done"

    def held_values(self, nodes: Iterable[ManagedNode] | None = None) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        """``(labels, 1.0)`` per node gpufleet holds, for the ``node_remediation_active`` family."""
        verb = "drain" if self.manager.name == "slurm" else "taint"
        got = nodes if nodes is not None else self.manager.managed_nodes()
        return [((("node", n.name), ("manager", self.manager.name), ("action", verb)), 1.0) for n in got if n.held]
