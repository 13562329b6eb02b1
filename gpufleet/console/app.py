"""The console's FastAPI app, the middleware that routes /console to it, and the per-request view
(session, CSRF, the in-process API client, the permission check)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufleet.console.client import ApiCallError
from gpufleet.console.session import COOKIE
from gpufleet.console.view import (  # noqa: F401  (re-exported: console_url and the view for callers)
    HERE,
    PREFIX,
    SECURITY_HEADERS,
    Console,
    CsrfError,
    NotSignedIn,
    View,
    apply_cookies,
    console_url,
    request_bag,
    set_cookie,
    take_flashes,
    templates,
    view,
)


def build_console(api: ASGIApp, matrix_of: Any, settings_of: Any = dict, auth_of: Any = None) -> FastAPI:
    """``auth_of``: the API's authenticator (``Auth``) the console checks every session's tokens with."""
    from gpufleet.console import pages

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = Console(api, matrix_of, settings_of, auth_of)
    app.include_router(pages.router)
    app.mount(PREFIX + "/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def _cookies(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        apply_cookies(request, response)  # a refreshed token pair, flash messages
        return response

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        nxt = request.url.path if request.method == "GET" else PREFIX + "/"
        request_bag(request).pop("console_cookies", None)
        set_cookie(request, COOKIE, "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(nxt)}", status_code=303)

    @app.exception_handler(CsrfError)
    async def _csrf(request: Request, exc: CsrfError) -> Response:
        return _error_page(request, 403, str(exc))

    @app.exception_handler(ApiCallError)
    async def _api_error(request: Request, exc: ApiCallError) -> Response:
        return _error_page(request, exc.status, exc.detail)

    return app


def _error_page(request: Request, status: int, detail: str) -> Response:
    v: View | None = request_bag(request).get("console_view")
    if v is not None:
        return v.render("error.html", status=status, status_code=status, detail=detail)
    return templates.TemplateResponse(request, "error.html", {"me": None, "status_code": status, "detail": detail,
                                                              "prefix": PREFIX, "flashes": take_flashes(request)},
                                      status_code=status, headers={"Cache-Control": "no-store"})


class ConsoleMiddleware:
    """Routes ``/console/*`` to the console app (``/`` redirects there); everything else to the API.

    Added to the API app between its audit middleware and its request log, so console requests are
    logged but skip the API's bearer-token body guard: the console authenticates by session cookie and
    CSRF token, and calls the API (with all its checks and its audit) in-process."""

    def __init__(self, app: ASGIApp, api: FastAPI, max_body_bytes: int = 1 << 20) -> None:
        self.app = app
        ctx = getattr(api.state, "ctx", None)
        self.console = RequestBodyLimitMiddleware(
            build_console(api, lambda: getattr(api.state, "matrix", {}), lambda: getattr(ctx, "settings", {}),
                          lambda: api.state.ctx.auth),
            max_body_size=max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/" and scope["method"] in ("GET", "HEAD"):
            await RedirectResponse(PREFIX + "/", status_code=307)(scope, receive, send)
            return
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"console;dur={(time.perf_counter() - started) * 1000:.1f}".encode()  # Server-Timing
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, (b"server-timing", took)]
            await send(message)

        await self.console(scope, receive, secure)
