"""/alerts and /silences."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request

from gpufleet.api.deps import Ctx, CurrentUser, audit_as
from gpufleet.api.schemas import AlertPublic, SilenceCreate, SilencePublic

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_model=list[AlertPublic])
def alerts(ctx: Ctx, state: str | None = None) -> list[AlertPublic]:
    """Alerts the engine holds (pending and firing), optionally filtered by state."""
    return [AlertPublic(**a) for a in ctx.fleet.alerts() if state is None or a.get("state") == state]


@router.get("/silences", response_model=list[SilencePublic])
def silences(ctx: Ctx) -> list[SilencePublic]:
    """Active silences."""
    return [SilencePublic(**s) for s in ctx.fleet.silence_service().list()]


@router.post("/silences", response_model=SilencePublic, status_code=201)
def add_silence(body: SilenceCreate, request: Request, ctx: Ctx, me: CurrentUser) -> SilencePublic:
    """Silence alerts whose labels match every matcher ({name, op: = != =~ !~, value}; regexes anchored,
    as in Alertmanager), until now + duration."""
    matchers = [m.model_dump() for m in body.matchers]
    audit_as(request, "silence.create", ",".join(f"{m.name}{m.op}{json.dumps(m.value)}" for m in body.matchers)[:256],
             matchers=matchers)
    s = ctx.fleet.silence_service().add(matchers, time.time() + body.duration_s, body.comment, me.username)
    return SilencePublic(**s)


@router.delete("/silences/{silence_id}", status_code=204)
def expire_silence(silence_id: str, request: Request, ctx: Ctx) -> None:
    """Expire a silence now."""
    audit_as(request, "silence.expire", silence_id)
    ctx.fleet.silence_service().expire(silence_id)
