"""How a job queue is written and restored: row-by-row batches for a :class:`~gpufleet.allocator.records.QueueStore`
(the service's database), or the older whole-file JSON for the offline ``gpufleet allocator`` tools.

These are the queue's persistence hooks, kept apart from its scheduling (:mod:`gpufleet.allocator.queue`):
every queue operation ends in :func:`save`, which hands the store only what changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpufleet.allocator.records import HOLDING, JobRecord, QueueChanges, Usage
from gpufleet.allocator.state import Health
from gpufleet.exporter.errors import InputError, NotFound

if TYPE_CHECKING:
    from gpufleet.allocator.queue import JobQueue


def to_dict(q: JobQueue) -> dict[str, Any]:
    """The whole queue as one JSON-able document (the file format, and what a store's ``load`` returns)."""
    return {"version": 1, "seq": q._seq, "counters": q.counters,
            "jobs": [r.to_dict() for r in q.jobs.values()],
            "usage": [u.__dict__ | {"uuids": list(u.uuids)} for u in q.usage],
            "quotas": {t: {"guaranteed": tq.guaranteed, "maximum": tq.maximum} for t, tq in q.quotas.items()},
            "overrides": {f"{k}:{t}": {"state": o.health.name.lower(), "reason": o.reason, "by": o.by, "at": o.at}
                          for (k, t), o in q.state.overrides.items()}}


def take_changes(q: JobQueue) -> QueueChanges:
    """What changed since the last write, and forget it (the write-through store's batch)."""
    ch = QueueChanges(jobs=list(q._dirty.values()), transitions=q._transitions,
                      usage=q.usage[q._usage_written:], overrides=q.state.take_override_changes(),
                      seq=q._seq, counters=dict(q.counters))
    q._dirty = {}
    q._transitions = []
    q._usage_written = len(q.usage)
    return ch


def rewrite_all(q: JobQueue) -> None:
    """Mark every job, usage stretch and override as changed (an import into an empty store) and write."""
    q._dirty = dict(q.jobs)
    q._usage_written = 0
    q.state.override_changes.update(q.state.overrides)
    if q.store is not None:
        q.store.write(take_changes(q))


def save(q: JobQueue) -> None:
    """Write what changed: a batch to the store, or (without one) the whole file, atomically."""
    if q.store is not None:
        changes = take_changes(q)
        if changes:
            q.store.write(changes)
        return
    if q.path is None:
        return
    q.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = q.path.with_suffix(q.path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_dict(q)), encoding="utf-8")
    os.replace(tmp, q.path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A queue file's document (``None`` when there is no file yet; a clear error when it is not JSON)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise InputError(f"queue state is not valid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
    return data


def restore(q: JobQueue, data: Mapping[str, Any]) -> None:
    """Load :func:`to_dict`'s document into an empty queue: overrides re-applied, running jobs keep their GPUs."""
    state = q.state
    q._seq = int(data["seq"])
    q.counters.update(data["counters"])
    health = data.get("health")
    if health and len(health["nodes"]) == state.n_nodes:  # files older than operator overrides
        for i, h in enumerate(health["nodes"]):
            if h in (Health.DRAINING, Health.CORDONED):
                state.set_node_override(i, Health(h))
        for i, row in enumerate(health["gpus"]):
            for j, h in enumerate(row):
                if h in (Health.DRAINING, Health.CORDONED) and j < len(state.uuids[i]):
                    state.set_gpu_override(state.uuids[i][j], Health(h))
    for key, o in data.get("overrides", {}).items():
        kind, _, target = key.partition(":")
        try:
            if kind == "gpu":
                state.set_gpu_override(target, Health[o["state"].upper()], reason=o.get("reason", ""),
                                       by=o.get("by", ""), at=float(o.get("at", 0.0)))
            elif kind == "node":
                state.set_node_override(target, Health[o["state"].upper()], reason=o.get("reason", ""),
                                        by=o.get("by", ""), at=float(o.get("at", 0.0)))
        except NotFound:  # the GPU or node left the fleet; its override stays stored for its return
            continue
    state.override_changes.clear()  # what was loaded is stored already
    for d in data["jobs"]:
        rec = JobRecord.from_dict(d)
        q._adopt(rec, new=False)  # (also indexes it when it waits)
        if rec.status in HOLDING:
            for pl, req in zip(rec.placements, rec.spec.members(), strict=False):
                state.allocate(pl, req.cpu_milli, req.mem_mib)
    q.usage = [Usage(**(u | {"uuids": tuple(u.get("uuids", ()))})) for u in data.get("usage", [])]
    q._usage_written = len(q.usage)
