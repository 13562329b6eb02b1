"""/audit: search, CSV export and chain verification of the audit log (admins and auditors).

Every query parameter is bounded (422 beyond): text filters to the column sizes, times to finite unix
times; ``target`` is a literal substring (``%`` and ``_`` match themselves)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from gpufleet.api.audit import FIELD_LIMITS, MAX_LIMIT, MAX_TS
from gpufleet.api.deps import Ctx
from gpufleet.api.schemas import AuditPublic, AuditVerifyPublic, Page

router = APIRouter(prefix="/audit", tags=["audit"])

Since = Annotated[float | None, Query(ge=0, le=MAX_TS, allow_inf_nan=False, description="unix time, inclusive")]
Until = Annotated[float | None, Query(ge=0, le=MAX_TS, allow_inf_nan=False, description="unix time, exclusive")]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
User = Annotated[str | None, Query(max_length=FIELD_LIMITS["user"], pattern=NO_NUL, description="exactly this user")]
Action = Annotated[str | None, Query(max_length=FIELD_LIMITS["action"], pattern=NO_NUL,
                                     description="e.g. login, job, job.cancel")]
Target = Annotated[str | None, Query(max_length=FIELD_LIMITS["target"], pattern=NO_NUL,
                                     description="target contains this text (literally)")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.get("", response_model=Page[AuditPublic])
def search(ctx: Ctx, since: Since = None, until: Until = None, user: User = None, action: Action = None,
           target: Target = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
           offset: Offset = 0) -> Page[AuditPublic]:
    """Search the audit log by time range, user, action type and target."""
    rows, total = ctx.audit.search(since=since, until=until, user=user, action=action, target=target,
                                   limit=limit, offset=offset)
    return Page[AuditPublic](items=[AuditPublic.model_validate(r) for r in rows], total=total, limit=limit,
                             offset=offset)


@router.get("/export", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export(ctx: Ctx, since: Since = None, until: Until = None, user: User = None, action: Action = None,
           target: Target = None, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT) -> Response:
    """The matching records as CSV."""
    rows, _ = ctx.audit.search(since=since, until=until, user=user, action=action, target=target, limit=limit)
    return Response(ctx.audit.export_csv(rows), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="gpufleet-audit.csv"'})


@router.get("/verify", response_model=AuditVerifyPublic)
def verify(ctx: Ctx) -> AuditVerifyPublic:
    """Check the hash chain, every record's HMAC and every signed checkpoint; lists every problem found."""
    r = ctx.audit.verify()
    return AuditVerifyPublic(ok=r.ok, records=r.records, first_broken_seq=r.first_broken_seq, reason=r.reason,
                             anchored=r.anchored, checkpoints=r.checkpoints,
                             last_checkpoint_seq=r.last_checkpoint_seq, head_seq=r.head_seq, problems=r.problems)
