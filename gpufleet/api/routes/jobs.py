"""/jobs and /allocations: batch submission with dependencies, status, cancel (developers: own jobs)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from gpufleet.api.deps import Ctx, CurrentUser, Forbidden, audit_as
from gpufleet.api.schemas import (
    AllocationPage,
    AllocationPublic,
    AllocationTotals,
    JobBatch,
    JobLogs,
    JobPublic,
    Page,
)

router = APIRouter(tags=["jobs"])


@router.post("/jobs", response_model=list[JobPublic], status_code=201)
def submit(body: JobBatch, request: Request, ctx: Ctx, me: CurrentUser) -> list[JobPublic]:
    """Submit a batch of jobs; `depends_on` names job ids or `client_id`s of the same batch."""
    audit_as(request, "job.submit", ",".join(j.name for j in body.jobs)[:256], count=len(body.jobs))
    jobs = ctx.fleet.job_service().submit([j.model_dump(exclude_none=True) for j in body.jobs], me.username, me.team)
    return [JobPublic(**j) for j in jobs]


@router.get("/jobs", response_model=Page[JobPublic])
def list_jobs(ctx: Ctx, me: CurrentUser, state: str | None = None, limit: int = Query(100, ge=1, le=10_000),
              offset: int = Query(0, ge=0, le=2**31 - 1)) -> Page[JobPublic]:
    """Jobs, newest first; developers see their own."""
    owner = me.username if me.role == "developer" else None
    jobs = [j for j in ctx.fleet.job_service().list(owner) if state is None or j["state"] == state]
    return Page[JobPublic](items=[JobPublic(**j) for j in jobs[offset:offset + limit]], total=len(jobs),
                           limit=limit, offset=offset)


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: str, ctx: Ctx, me: CurrentUser) -> JobPublic:
    """One job; developers may only read their own."""
    job = ctx.fleet.job_service().get(job_id)
    if me.role == "developer" and job["user"] != me.username:
        raise Forbidden("developers may only read their own jobs")
    return JobPublic(**job)


@router.get("/jobs/{job_id}/logs", response_model=JobLogs)
def job_logs(job_id: str, ctx: Ctx, me: CurrentUser, offset: int = Query(0, ge=0, le=2**62)) -> JobLogs:
    """The job's stdout and stderr (every attempt) from byte ``offset``; poll with ``next_offset`` to follow."""
    svc = ctx.fleet.job_service()
    if me.role == "developer" and svc.get(job_id)["user"] != me.username:
        raise Forbidden("developers may only read their own jobs")
    text, nxt = svc.logs(job_id, offset)
    return JobLogs(job_id=job_id, offset=offset, next_offset=nxt, text=text)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel(job_id: str, request: Request, ctx: Ctx, me: CurrentUser) -> JobPublic:
    """Cancel a queued or running job; developers may only cancel their own."""
    audit_as(request, "job.cancel", job_id)
    svc = ctx.fleet.job_service()
    if me.role == "developer" and svc.get(job_id)["user"] != me.username:
        raise Forbidden("developers may only cancel their own jobs")
    return JobPublic(**svc.cancel(job_id))


@router.get("/allocations", response_model=AllocationPage)
def allocations(ctx: Ctx, me: CurrentUser, limit: int = Query(1000, ge=1, le=100_000),
                offset: int = Query(0, ge=0, le=2**31 - 1)) -> AllocationPage:
    """Which job holds which GPU (or share of one) now. Developers see only their own jobs' allocations;
    ``fleet`` gives everyone the anonymised totals (jobs, GPUs, summed shares)."""
    svc = ctx.fleet.job_service()
    rows = svc.allocations()
    fleet = AllocationTotals(jobs=len({r["job_id"] for r in rows}), gpus=len({r["uuid"] for r in rows}),
                             share=round(sum(r["share"] for r in rows), 6))
    jobs = {j["id"]: j for j in svc.list(me.username if me.role == "developer" else None)}
    rows = [{**r, "job_name": jobs[r["job_id"]]["name"], "user": jobs[r["job_id"]]["user"]}
            for r in rows if r["job_id"] in jobs]
    return AllocationPage(items=[AllocationPublic(**r) for r in rows[offset:offset + limit]], total=len(rows),
                          limit=limit, offset=offset, fleet=fleet)
