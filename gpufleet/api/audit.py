"""The tamper-evident audit log: every state-changing call and every login attempt, hash-chained.

Each record's ``hash`` is SHA-256 over the previous record's hash and the record's canonical JSON, so
changing, removing or reordering any record breaks the chain from that point; :func:`verify` reports
the first broken link. Records are appended under a lock (and, on PostgreSQL, an advisory lock) so the
chain stays linear with several writers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from gpufleet.api.db import AuditRecord, Database

GENESIS = "0" * 64
_LOCK = threading.Lock()
ACTION_TYPES = ("login", "logout", "refresh", "password", "user", "job", "gpu", "silence", "alert", "settings")


def _payload(ts: float, user: str, role: str, action: str, target: str, outcome: str, source: str,
             detail: dict[str, Any]) -> str:
    return json.dumps({"ts": round(ts, 6), "user": user, "role": role, "action": action, "target": target,
                       "outcome": outcome, "source": source, "detail": detail},
                      sort_keys=True, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, payload: str) -> str:
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, *, user: str, role: str, action: str, target: str, outcome: str, source: str,
               detail: dict[str, Any] | None = None, ts: float | None = None) -> AuditRecord:
        ts = time.time() if ts is None else ts
        detail = detail or {}
        with _LOCK, self.db.session() as s:
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            last = s.execute(select(AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)).scalar()
            prev = last or GENESIS
            payload = _payload(ts, user, role, action, target, outcome, source, detail)
            rec = AuditRecord(ts=round(ts, 6), user=user, role=role, action=action, target=target,
                              outcome=outcome, source=source, detail=detail, prev_hash=prev,
                              hash=chain_hash(prev, payload))
            s.add(rec)
        return rec

    def search(self, *, since: float | None = None, until: float | None = None, user: str | None = None,
               action: str | None = None, target: str | None = None, limit: int = 100,
               offset: int = 0) -> tuple[list[AuditRecord], int]:
        with self.db.session() as s:
            q = select(AuditRecord)
            if since is not None:
                q = q.where(AuditRecord.ts >= since)
            if until is not None:
                q = q.where(AuditRecord.ts < until)
            if user:
                q = q.where(AuditRecord.user == user)
            if action:
                # "job" matches job.submit, job.cancel ...; "job.cancel" matches exactly
                q = q.where((AuditRecord.action == action) | AuditRecord.action.startswith(action + "."))
            if target:
                q = q.where(AuditRecord.target.contains(target))
            total = len(s.execute(q.with_only_columns(AuditRecord.seq)).all())
            rows = s.execute(q.order_by(AuditRecord.seq).offset(offset).limit(limit)).scalars().all()
            return list(rows), total

    def verify(self) -> VerifyResult:
        with self.db.session() as s:
            return verify_records(s)

    def export_csv(self, records: list[AuditRecord]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["seq", "time", "user", "role", "action", "target", "outcome", "source", "detail",
                    "prev_hash", "hash"])
        for r in records:
            w.writerow([r.seq, _iso(r.ts), r.user, r.role, r.action, r.target, r.outcome, r.source,
                        json.dumps(r.detail, sort_keys=True), r.prev_hash, r.hash])
        return buf.getvalue()


@dataclass
class VerifyResult:
    ok: bool
    records: int
    first_broken_seq: int | None = None
    reason: str | None = None


def verify_records(s: Session) -> VerifyResult:
    prev = GENESIS
    n = 0
    for rec in s.execute(select(AuditRecord).order_by(AuditRecord.seq)).scalars():
        n += 1
        if rec.prev_hash != prev:
            return VerifyResult(False, n, rec.seq, "prev_hash does not match the previous record's hash "
                                "(a record was removed, inserted or reordered)")
        payload = _payload(rec.ts, rec.user, rec.role, rec.action, rec.target, rec.outcome, rec.source,
                           rec.detail or {})
        if chain_hash(prev, payload) != rec.hash:
            return VerifyResult(False, n, rec.seq, "the record's content does not match its hash (it was changed)")
        prev = rec.hash
    return VerifyResult(True, n)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
