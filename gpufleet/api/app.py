"""The FastAPI application: routers, the role check on every route, problem+json errors, and the audit
middleware that records every state-changing call and every login attempt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufleet import __version__
from gpufleet.api import errors
from gpufleet.api.deps import AppContext, authorize
from gpufleet.api.permissions import MATRIX
from gpufleet.api.routes import alerts, audit, auth, gpus, insights, jobs, system, users

log = logging.getLogger("gpufleet.api")
ROUTERS = (auth.router, users.router, gpus.router, jobs.router, insights.router, alerts.router, audit.router,
           system.router)
AUDITED_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def create_app(ctx: AppContext, *, cors_origins: list[str] | None = None,
               metrics: Callable[[], tuple[bytes, str]] | None = None,
               extra: list[tuple[Any, dict[tuple[str, str], frozenset[str]]]] | None = None) -> FastAPI:
    """Build the API over an AppContext. ``metrics`` returns (exposition, content type) for /metrics;
    ``extra`` adds (router, permission rows) pairs, e.g. the cluster-manager integrations."""
    app = FastAPI(title="gpufleet", version=__version__,
                  description="GPU fleet observability and predictive operations. Log in at /auth/login; "
                              "send the access token as `Authorization: Bearer <token>`.")
    app.state.ctx = ctx
    app.state.matrix = dict(MATRIX)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(authorize)])
    for router, permissions in extra or []:
        app.state.matrix.update(permissions)
        app.include_router(router, dependencies=[Depends(authorize)])
    if metrics is not None:
        @app.get("/metrics", include_in_schema=False, dependencies=[Depends(authorize)])
        def _metrics() -> Response:
            body, ctype = metrics()
            return Response(body, media_type=ctype)
    errors.install(app)
    check_matrix(app)
    app.openapi_schema = None  # built again on first request, after every route exists
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])

    app.add_middleware(AuditMiddleware, ctx=ctx)
    return app


class AuditMiddleware:
    """Pure ASGI middleware (no per-request task or body copying): records every state-changing call
    after its response has gone out, with the status it got."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in AUDITED_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.monotonic()
        try:
            await self.app(scope, receive, capture)
        finally:
            _record(self.ctx, Request(scope), status)
            log.info("request", extra={"method": scope["method"], "path": scope["path"], "status": status,
                                       "ms": round((time.monotonic() - started) * 1000, 2)})


def _record(ctx: AppContext, request: Request, status: int) -> None:
    st = request.state
    principal = getattr(st, "principal", None)
    user = principal.username if principal else getattr(st, "audit_user", "-")
    role = principal.role if principal else getattr(st, "audit_role", "-")
    route = request.scope.get("route")
    action = getattr(st, "audit_action", None) or f"{request.method} {getattr(route, 'path', request.url.path)}"
    target = getattr(st, "audit_target", None) or request.url.path
    if status < 400:
        outcome = "success"
    elif status in (401, 403, 429):
        outcome = "denied"
    else:
        outcome = "failure"
    detail: dict[str, Any] = dict(getattr(st, "audit_detail", {}) or {})
    detail["status"] = status
    try:
        ctx.audit.append(user=user, role=role, action=action, target=target, outcome=outcome,
                         source=request.client.host if request.client else "?", detail=detail)
    except Exception:  # the call already happened; losing the record must be loud, not fatal
        log.exception("could not append to the audit log")


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every API route, from the OpenAPI schema (FastAPI includes routers
    lazily, so ``app.routes`` does not list them) plus the routes left out of the schema."""
    routes = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    routes |= {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in (r.methods or set()) - {"HEAD"}}
    return routes


def check_matrix(app: FastAPI) -> None:
    """Every route must have a permission rule."""
    missing = sorted(api_routes(app) - set(getattr(app.state, "matrix", MATRIX)))
    if missing:
        raise RuntimeError(f"routes without a permission rule: {missing}")
