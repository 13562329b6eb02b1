"""The FastAPI application: routers, the role check on every route, problem+json errors, and the audit
middleware that records every state-changing call and every login attempt."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufleet import __version__
from gpufleet.api import errors, offline_docs
from gpufleet.api.deps import AppContext, authorize
from gpufleet.api.permissions import MATRIX
from gpufleet.api.routes import alerts, audit, auth, gpus, insights, jobs, system, users
from gpufleet.api.security import AuthError
from gpufleet.console import ConsoleMiddleware

log = logging.getLogger("gpufleet.api")
access_log = logging.getLogger("gpufleet.api.access")
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
                              "send the access token as `Authorization: Bearer <token>`.",
                  docs_url=None, redoc_url=None)  # served from installed assets, never a CDN: offline_docs
    offline_docs.install(app)
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
    # innermost first: the streamed-bytes counter, then the guard (size by Content-Length, authentication
    # before any body is read), CORS outside it (preflights carry no token), the audit log outermost
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=ctx.max_body_bytes)
    app.add_middleware(BodyGuardMiddleware, ctx=ctx, api=app)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])

    app.add_middleware(AuditMiddleware, ctx=ctx)
    # the web console at /console: cookie sessions + CSRF, calls this API in-process (audited there)
    app.add_middleware(ConsoleMiddleware, api=app, max_body_bytes=ctx.max_body_bytes)
    app.add_middleware(RequestLogMiddleware)  # outermost: every request, whatever answered it
    return app


class RequestLogMiddleware:
    """One log line per HTTP request: method, path (no query string), status and duration, also as
    structured fields (``method``, ``path``, ``status``, ``duration_ms``) for the JSON log format."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, capture)
        finally:
            ms = round((time.perf_counter() - started) * 1000, 2)
            method, path = scope["method"], scope["path"]
            access_log.info("%s %s %d %.2f ms", method, path, status, ms,
                            extra={"method": method, "path": path, "status": status, "duration_ms": ms})


class BodyGuardMiddleware:
    """Refuses a body over ``ctx.max_body_bytes`` by its Content-Length (413), and a request with a body
    to a route that needs a token without a valid one (401), before anything reads the body. Chunked
    bodies are counted as they stream in by Starlette's RequestBodyLimitMiddleware (413 at the limit)."""

    def __init__(self, app: ASGIApp, ctx: AppContext, api: FastAPI) -> None:
        self.app = app
        self.ctx = ctx
        self.api = api
        self._public: list[tuple[str, re.Pattern[str]]] | None = None

    def _is_public(self, method: str, path: str) -> bool:
        if self._public is None:
            matrix = getattr(self.api.state, "matrix", MATRIX)
            self._public = [(m, _template(p)) for (m, p), roles in matrix.items() if not roles]
            self._public += [("GET", re.compile("^" + re.escape(u) + "$"))
                             for u in (self.api.openapi_url, self.api.docs_url, self.api.redoc_url) if u]
        return any(m == method and rx.fullmatch(path) for m, rx in self._public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.ctx.max_body_bytes
        length = headers.get("content-length")
        size = 0
        if length is not None:
            if not length.strip().isdigit():
                await errors.problem(400, "Bad request", f"Content-Length {length[:40]!r} is not a byte count")(
                    scope, receive, send)
                return
            size = int(length)
            if size > limit:
                await errors.problem(413, "Content too large", f"request body of {size} bytes is over the limit "
                                     f"of {limit} bytes (api.max_body_bytes)")(scope, receive, send)
                return
        has_body = size > 0 or "transfer-encoding" in headers
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if has_body and scope["method"] != "OPTIONS" and not self._is_public(scope["method"], path):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            try:
                if scheme.lower() != "bearer" or not token.strip():
                    raise AuthError("authentication required: send 'Authorization: Bearer <access token>'")
                token = token.strip()
                principal = self.ctx.auth.cached(token) or await run_in_threadpool(self.ctx.auth.authenticate, token)
            except AuthError as exc:
                await errors.problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})(
                    scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


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

        try:
            await self.app(scope, receive, capture)
        finally:
            _record(self.ctx, Request(scope), status)  # the request itself is logged by RequestLogMiddleware


def _template(path: str) -> re.Pattern[str]:
    """'/jobs/{job_id}' -> a pattern that matches '/jobs/anything-but-a-slash'."""
    parts = re.split(r"\{[^}]+\}", path)
    return re.compile("^" + "[^/]+".join(re.escape(part) for part in parts) + "$")


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
