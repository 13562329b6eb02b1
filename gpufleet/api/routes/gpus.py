"""/gpus: live state, risk and processes; admins cordon, drain and uncordon."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from gpufleet.api.deps import Ctx, audit_as
from gpufleet.api.schemas import GpuPublic, GpuStateChange, Page

router = APIRouter(prefix="/gpus", tags=["gpus"])


@router.get("", response_model=Page[GpuPublic])
async def list_gpus(ctx: Ctx, node: str | None = None, limit: int = Query(100, ge=1, le=10_000),
              offset: int = Query(0, ge=0, le=2**31 - 1)) -> Page[GpuPublic]:
    """Every GPU with its live state, failure risk and processes (filter by node)."""
    gpus = [g for g in ctx.fleet.gpus() if node is None or g["node"] == node]
    return Page[GpuPublic](items=[GpuPublic(**g) for g in gpus[offset:offset + limit]], total=len(gpus),
                           limit=limit, offset=offset)


@router.get("/{uuid}", response_model=GpuPublic)
async def get_gpu(uuid: str, ctx: Ctx) -> GpuPublic:
    """One GPU by uuid."""
    return GpuPublic(**ctx.fleet.gpu(uuid))


def _change(uuid: str, state: str, body: GpuStateChange, request: Request, ctx: Ctx) -> GpuPublic:
    audit_as(request, f"gpu.{state if state != 'ok' else 'uncordon'}", uuid, reason=body.reason)
    principal = getattr(request.state, "principal", None)
    return GpuPublic(**ctx.fleet.set_gpu(uuid, state, reason=body.reason,
                                         by=getattr(principal, "username", "") or ""))


@router.post("/{uuid}/cordon", response_model=GpuPublic)
def cordon(uuid: str, body: GpuStateChange, request: Request, ctx: Ctx) -> GpuPublic:
    """Keep new jobs off this GPU; running jobs continue."""
    return _change(uuid, "cordoned", body, request, ctx)


@router.post("/{uuid}/drain", response_model=GpuPublic)
def drain(uuid: str, body: GpuStateChange, request: Request, ctx: Ctx) -> GpuPublic:
    """Keep new jobs off this GPU and requeue its running jobs from their last checkpoint."""
    return _change(uuid, "draining", body, request, ctx)


@router.post("/{uuid}/uncordon", response_model=GpuPublic)
def uncordon(uuid: str, body: GpuStateChange, request: Request, ctx: Ctx) -> GpuPublic:
    """Return the GPU to service."""
    return _change(uuid, "ok", body, request, ctx)
