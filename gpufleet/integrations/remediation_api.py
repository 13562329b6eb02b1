"""HTTP routes over the remediators: what they did last and which nodes they hold; an operator's release.

Mount with the API's router-level ``authorize`` dependency (it sets ``request.state.principal``); the
operator's name in the audit record is that principal's username. Add :data:`PERMISSIONS` to the matrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request

from gpufleet.exporter.errors import NotFound
from gpufleet.integrations.remediation import Remediator

PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/integrations/remediation"): frozenset({"admin", "auditor"}),
    ("POST", "/integrations/remediation/{manager}/nodes/{node}/release"): frozenset({"admin"}),
}


def remediation_router(remediators: Callable[[], Sequence[Remediator]]) -> APIRouter:
    router = APIRouter(tags=["remediation"])

    def find(manager: str) -> Remediator:
        for r in remediators():
            if r.manager.name == manager:
                return r
        raise NotFound(f"no remediator for {manager!r} (enable it in the [cluster] settings)")

    @router.get("/integrations/remediation", summary="Nodes gpufleet holds and its last decisions")
    def status() -> dict[str, Any]:
        out = {}
        for r in remediators():
            held = [n.name for n in r.manager.managed_nodes() if n.held]
            out[r.manager.name] = {"held": held, "dry_run": r.policy.dry_run,
                                   "last": [{
                                       "ts": a.ts, "kind": a.kind, "node": a.node, "risk": a.risk,
                                       "outcome": a.outcome, "reason": a.reason} for a in r.last]}
        return out

    @router.post("/integrations/remediation/{manager}/nodes/{node}/release",
                 summary="An operator brings a node gpufleet holds back (gpufleet then leaves it alone a while)")
    def release(manager: str, node: str, request: Request) -> dict[str, Any]:
        principal = getattr(request.state, "principal", None)
        who = getattr(principal, "username", None) or "operator"
        a = find(manager).release(node, operator=who, now=time.time())
        return {"node": a.node, "outcome": a.outcome, "reason": a.reason, "actor": a.actor}

    return router
