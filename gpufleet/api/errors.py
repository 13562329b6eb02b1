"""Errors as application/problem+json (RFC 9457), with the field that is wrong where there is one."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpufleet.api.deps import Forbidden
from gpufleet.api.security import AuthError, Throttled
from gpufleet.exporter.errors import (
    BackendUnavailable,
    ConfigError,
    Conflict,
    GpufleetError,
    InputError,
    NotFound,
)

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None, field: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if field:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
                  for e in exc.errors()]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        return problem(422, "Invalid request", f"{first['field']}: {first['message']}", field=first["field"],
                       errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        return problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Throttled)
    async def _throttled(request: Request, exc: Throttled) -> JSONResponse:
        return problem(429, "Too many failed logins", str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return problem(403, "Forbidden", str(exc))

    @app.exception_handler(GpufleetError)
    async def _domain(request: Request, exc: GpufleetError) -> JSONResponse:
        status, title = 500, "Internal error"
        if isinstance(exc, NotFound):
            status, title = 404, "Not found"
        elif isinstance(exc, Conflict):
            status, title = 409, "Conflict"
        elif isinstance(exc, (InputError, ConfigError)):
            status, title = 422, "Invalid request"
        elif isinstance(exc, BackendUnavailable):
            status, title = 503, "Backend unavailable"
        return problem(status, title, str(exc), field=getattr(exc, "column", None) and str(exc.column))  # type: ignore[attr-defined]
