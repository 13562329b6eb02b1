"""The API's job service over the allocator's queue: submission, listing, cancel, allocations, GPU health.

The queue is not thread-safe; the service's scheduler thread and the API's request threads share it
through this adapter's lock.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable
from typing import Any

from gpufleet.allocator.jobs import JobSpec, PriorityClass, validate_batch
from gpufleet.allocator.queue import JobQueue, JobRecord
from gpufleet.allocator.state import FULL, Health
from gpufleet.exporter.errors import Conflict, InputError, NotFound
from gpufleet.exporter.schema import Snapshot

_PRIORITY = {"batch": "batch", "normal": "normal", "high": "high", "critical": "critical"}
_HEALTH = {"ok": Health.OK, "cordoned": Health.CORDONED, "draining": Health.DRAINING}


class QueueJobService:
    def __init__(self, queue: JobQueue, clock: Callable[[], float] = time.time) -> None:
        self.queue = queue
        self.clock = clock
        self.lock = threading.RLock()

    # -- API -----------------------------------------------------------------------------------------
    def submit(self, jobs: list[dict[str, Any]], user: str, team: str | None) -> list[dict[str, Any]]:
        now = self.clock()
        with self.lock:
            base = self.queue._seq  # ids continue the queue's own sequence
            ids: dict[str, str] = {}
            specs = []
            for k, j in enumerate(jobs):
                job_id = f"j{base + k + 1}-{j['name']}"
                ids[j.get("client_id") or j["name"]] = job_id
                specs.append((job_id, j))
            out_specs = []
            for job_id, j in specs:
                gpus = float(j["gpus"])
                whole, milli = (0, round(gpus * FULL)) if gpus < 1 else (int(gpus), FULL)
                if gpus >= 1 and gpus != int(gpus):
                    raise InputError(f"job {j['name']}: ask for a whole number of GPUs or a fraction below 1, got {gpus}")
                prio = PriorityClass.parse(_PRIORITY[j.get("priority", "normal")])
                out_specs.append(JobSpec(
                    name=job_id, gpus=max(whole, 1) if milli == FULL else 1, gpu_milli=milli,
                    gpu_memory_bytes=int(j.get("gpu_memory_bytes") or 0), gpu_types=tuple(j.get("gpu_types") or ()),
                    priority=prio, gang=bool(j.get("gang", True)), preemptible=bool(j.get("preemptible", False)),
                    checkpointing=j.get("checkpoint_interval_s") is not None,
                    checkpoint_interval_s=float(j.get("checkpoint_interval_s") or 3600.0),
                    depends_on=tuple(ids.get(d, d) for d in j.get("depends_on", [])),
                    duration_s=float(j.get("duration_s") or 3600.0), user=user, team=team or "default"))
            # all-or-nothing for a batch: validate every job first and report every reason
            _, rejected = validate_batch(out_specs, self.queue.limits, known=self.queue.jobs.keys())
            if rejected:
                reasons = "; ".join(f"{r.job}: {r.reason}" for r in rejected)
                raise InputError(f"batch rejected: {reasons}")
            accepted, _ = self.queue.submit(out_specs, now)
            self.queue.schedule(now)
            return [self._public(self.queue.jobs[n]) for n in accepted]

    def list(self, user: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            recs = sorted(self.queue.jobs.values(), key=lambda r: -r.seq)
            return [self._public(r) for r in recs if user is None or r.spec.user == user]

    def get(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            rec = self.queue.jobs.get(job_id)
            if rec is None:
                raise NotFound(f"no job {job_id!r}")
            return self._public(rec)

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            rec = self.queue.jobs.get(job_id)
            if rec is None:
                raise NotFound(f"no job {job_id!r}")
            if rec.status in ("done", "cancelled"):
                raise Conflict(f"job {job_id} is {rec.status} already")
            self.queue.cancel(job_id, self.clock())
            return self._public(rec)

    def allocations(self) -> builtins.list[dict[str, Any]]:
        with self.lock:
            st = self.queue.state
            out = []
            for rec in self.queue.jobs.values():
                for p in rec.placements:
                    for g in p.gpus:
                        out.append({"job_id": rec.spec.name, "uuid": st.uuids[p.node][g], "node": st.names[p.node],
                                    "share": p.milli / FULL})
            return out

    def set_gpu_health(self, uuid: str, state: str) -> None:
        with self.lock:
            health = _HEALTH.get(state, Health.CORDONED)
            if state == "draining":
                self.queue.interrupt_gpu(uuid, self.clock(), health=Health.DRAINING)
            else:
                self.queue.state.set_gpu_health(uuid, health)

    # -- the service's scheduler ---------------------------------------------------------------------
    def observe(self, snapshot: Snapshot, now: float) -> builtins.list[str]:
        """Take live load and up/lost state; requeue the jobs of GPUs that were lost; schedule."""
        with self.lock:
            st = self.queue.state
            lost = [u for u, up in snapshot.up.items() if not up and u in st._uuid_index
                    and st.gpu_health[st._uuid_index[u]] != Health.LOST]
            st.update_from_snapshot(snapshot)
            for uuid in lost:
                self.queue.interrupt_gpu(uuid, now, health=Health.LOST)
            return self.tick(now)

    def set_risk(self, risk: dict[str, float]) -> None:
        with self.lock:
            self.queue.state.set_risk(risk)

    def persist(self) -> None:
        with self.lock:
            self.queue._save()

    def tick(self, now: float) -> builtins.list[str]:
        """Finish due jobs and start what fits (called each collection cycle)."""
        with self.lock:
            self.queue.finish_due(now)
            return self.queue.schedule(now)

    def _public(self, rec: JobRecord) -> dict[str, Any]:
        st = self.queue.state
        return {
            "id": rec.spec.name, "name": rec.spec.name.split("-", 1)[1] if "-" in rec.spec.name else rec.spec.name,
            "user": rec.spec.user, "team": rec.spec.team, "state": rec.status, "gpus": rec.spec.gpu_count,
            "priority": rec.spec.priority.name.lower(), "depends_on": list(rec.spec.depends_on),
            "submitted_at": rec.submitted, "started_at": rec.started, "finished_at": rec.finished,
            "placement": [st.uuids[p.node][g] for p in rec.placements for g in p.gpus],
            "reason": None,
        }
