"""Typed dependencies: the app context, the current user, the role check from the permission matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gpufleet.api.audit import AuditLog
from gpufleet.api.backend import FleetState
from gpufleet.api.db import Database
from gpufleet.api.permissions import MATRIX
from gpufleet.api.security import Auth, AuthError, Principal


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass
class AppContext:
    db: Database
    auth: Auth
    audit: AuditLog
    fleet: FleetState
    settings: dict[str, Any]
    max_body_bytes: int = 1 << 20  # api.max_body_bytes: larger request bodies get 413 before they are read


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]
_bearer = HTTPBearer(auto_error=False, description="JWT access token from /auth/login")


async def authorize(request: Request, ctx: Ctx,
                    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal | None:
    """Router-level check: look the route up in the permission matrix and enforce it."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    roles = getattr(request.app.state, "matrix", MATRIX).get((request.method, path))
    if roles is None:
        raise Forbidden(f"no permission rule for {request.method} {path}")
    if not roles:
        return None
    if creds is None or creds.scheme.lower() != "bearer":
        raise AuthError("authentication required: send 'Authorization: Bearer <access token>'")
    principal = ctx.auth.authenticate(creds.credentials)
    request.state.principal = principal
    if principal.role not in roles:
        raise Forbidden(f"role {principal.role!r} may not {request.method} {path}")
    return principal


async def current_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise AuthError("authentication required")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def audit_as(request: Request, action: str, target: str, **detail: Any) -> None:
    """Name the action and target the audit middleware records for this request."""
    request.state.audit_action = action
    request.state.audit_target = target
    if detail:
        request.state.audit_detail = detail
