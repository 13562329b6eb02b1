"""Preemption and reclaim for :class:`~gpufleet.allocator.queue.JobQueue`: which running jobs a waiting
one may take GPUs from, and trying it (victims released one by one until the job fits, or everything put
back exactly as it was). The queue's pass memo (``_no_fit`` / ``_no_preempt``) is kept consistent."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpufleet.allocator.queue import JobQueue
    from gpufleet.allocator.records import JobRecord


def victims(q: JobQueue, rec: JobRecord, now: float) -> list[JobRecord]:
    """Running jobs that may be taken from, most expendable first."""
    eff = q.effective_priority(rec, now)
    out = [r for r in q._victim_pool.values() if r is not rec and may_take(q, rec, r, eff)]
    # seq last: the order of ``jobs`` (submission order) that a stable sort over it kept for ties
    out.sort(key=lambda r: (int(r.spec.priority), -(r.started or 0.0), r.seq))
    return out


def may_take(q: JobQueue, rec: JobRecord, r: JobRecord, eff: float) -> bool:
    """Whether ``rec`` (at effective priority ``eff``) may take the GPUs of the running preemptible
    ``r``: ``r``'s class is lower, or ``rec``'s team is within its guarantee and ``r``'s team borrows."""
    if int(r.spec.priority) < int(eff):
        return True
    quota = q.quotas.get(rec.spec.team)
    if quota is None:
        return False
    within = q.team_usage(rec.spec.team, r.gpu_type) + rec.spec.gpu_count <= quota.get(
        "guaranteed", r.gpu_type) + 1e-9
    vq = q.quotas.get(r.spec.team)
    return within and vq is not None and r.spec.team != rec.spec.team and (
        q.team_usage(r.spec.team, r.gpu_type) > vq.get("guaranteed", r.gpu_type) + 1e-9)


def try_with_victims(q: JobQueue, rec: JobRecord, now: float) -> bool:
    """Start ``rec`` by stopping victims (fewest, most expendable first), or change nothing."""
    key = (int(q.effective_priority(rec, now)), rec.spec.team, q._shape_id(rec))
    if q._no_preempt is not None and key in q._no_preempt:
        return False
    victims = q._victims(rec, now)
    if not victims:
        if q._no_preempt is not None:
            q._no_preempt.add(key)
        return False
    fit_before = set(q._no_fit or ())
    taken: list[JobRecord] = []
    for v in victims:
        q._unplace(v, v.placements)
        taken.append(v)
        ps = q._place_all(rec)
        if ps is not None:
            gtype = q._type_of(ps)
            if q._quota_ok(rec, gtype):
                q._unplace(rec, ps)  # placements are redone below once the victims are stopped
                break
            q._unplace(rec, ps)
    else:
        for v in taken:  # nothing worked: put the victims back exactly where they were
            for p, req in zip(v.placements, v.spec.members(), strict=False):
                q.state.allocate(p, req.cpu_milli, req.mem_mib)
        if q._no_fit is not None:  # the state is as before: what did not fit then does not fit now
            q._no_fit |= fit_before
        if q._no_preempt is not None:  # and the same ask finds nothing to preempt either
            q._no_preempt.add(key)
        return False
    for v in taken:  # victims were already released from the state
        for p, req in zip(v.placements, v.spec.members(), strict=False):
            q.state.allocate(p, req.cpu_milli, req.mem_mib)
        borrower = rec.spec.team != v.spec.team and int(v.spec.priority) >= int(
            q.effective_priority(rec, now))
        q._requeue(v, now, reason="reclaim" if borrower else "preemption")
    return q._try_start(rec, now)
