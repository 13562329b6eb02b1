"""/healthz, /readyz, /settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gpufleet.api.deps import Ctx

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready yet"}})
def readyz(ctx: Ctx) -> JSONResponse:
    """Readiness: the database answers and the service has collected at least once."""
    try:
        with ctx.db.session() as s:
            s.connection()
        db_ok = True
    except Exception:
        db_ok = False
    ready = db_ok and ctx.fleet.ready
    return JSONResponse({"ready": ready, "database": db_ok, "collected": ctx.fleet.ready},
                        status_code=200 if ready else 503)


@router.get("/settings")
def settings(ctx: Ctx) -> dict[str, Any]:
    """The service's effective settings, secrets masked."""
    return ctx.settings
