"""/audit: search, CSV export and chain verification of the audit log (admins and auditors)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from gpufleet.api.deps import Ctx
from gpufleet.api.schemas import AuditPublic, AuditVerifyPublic, Page

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=Page[AuditPublic])
def search(ctx: Ctx, since: float | None = Query(None, description="unix time, inclusive"),
           until: float | None = Query(None, description="unix time, exclusive"),
           user: str | None = None, action: str | None = Query(None, description="e.g. login, job, job.cancel"),
           target: str | None = None, limit: int = Query(100, ge=1, le=10_000),
           offset: int = Query(0, ge=0, le=2**31 - 1)) -> Page[AuditPublic]:
    """Search the audit log by time range, user, action type and target."""
    rows, total = ctx.audit.search(since=since, until=until, user=user, action=action, target=target,
                                   limit=limit, offset=offset)
    return Page[AuditPublic](items=[AuditPublic.model_validate(r) for r in rows], total=total, limit=limit,
                             offset=offset)


@router.get("/export", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export(ctx: Ctx, since: float | None = None, until: float | None = None, user: str | None = None,
           action: str | None = None, target: str | None = None) -> Response:
    """The matching records as CSV."""
    rows, _ = ctx.audit.search(since=since, until=until, user=user, action=action, target=target,
                               limit=1_000_000)
    return Response(ctx.audit.export_csv(rows), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="gpufleet-audit.csv"'})


@router.get("/verify", response_model=AuditVerifyPublic)
def verify(ctx: Ctx) -> AuditVerifyPublic:
    """Check the hash chain; reports the first broken link."""
    r = ctx.audit.verify()
    return AuditVerifyPublic(ok=r.ok, records=r.records, first_broken_seq=r.first_broken_seq, reason=r.reason)
