"""The tamper-evident audit log: every state-changing call and every login attempt, hash-chained and anchored.

Each record's ``hash`` covers the previous record's hash and the record's canonical JSON, so changing,
removing or reordering any record breaks the chain from that point. The chain is *anchored* by a key the
database does not hold (:class:`AuditKeyring`, a 0600 file under the data folder): a record's hash is an
HMAC-SHA256 with that key, so whoever can write the database but not read the key cannot recompute the
chain after deleting or editing a row. Signed checkpoints of the chain head (sequence number, head hash,
HMAC) go to an append-only file outside the database and to the service log, so deleting the newest rows
(which leaves a shorter, valid chain) shows as a head below the last checkpoint. Records written before the
log was anchored (an older version) stay plain SHA-256 up to the sequence number the anchor entry names.

Records are appended under a lock (and, on PostgreSQL, an advisory lock) so the chain stays linear with
several writers.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from gpufleet.api.db import AuditRecord, Database
from gpufleet.api.private_files import FILE_MODE, create_private_file, private_dir, read_hex_key
from gpufleet.exporter.errors import InputError

log = logging.getLogger("gpufleet.audit")

GENESIS = "0" * 64
_LOCK = threading.Lock()
ACTION_TYPES = ("login", "logout", "refresh", "password", "user", "job", "gpu", "silence", "alert", "settings")
TRUNCATED = "…[truncated]"
# the columns' sizes (db.AuditRecord): longer values are stored cut, with the marker, never refused
FIELD_LIMITS = {"user": 64, "role": 16, "action": 64, "target": 256, "outcome": 16, "source": 64}
RETIRED_DIR = "audit-keys-retired"


def _payload(ts: float, user: str, role: str, action: str, target: str, outcome: str, source: str,
             detail: dict[str, Any]) -> str:
    return json.dumps({"ts": round(ts, 6), "user": user, "role": role, "action": action, "target": target,
                       "outcome": outcome, "source": source, "detail": detail},
                      sort_keys=True, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, payload: str) -> str:
    """The unkeyed link (records written before the log was anchored)."""
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def keyed_hash(key: bytes, prev_hash: str, payload: str) -> str:
    """The anchored link: HMAC-SHA256 with the audit key over the previous hash and the record."""
    return hmac.new(key, (prev_hash + payload).encode(), hashlib.sha256).hexdigest()


def clip(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, ending in the truncation marker when it was longer."""
    return value if len(value) <= limit else value[:limit - len(TRUNCATED)] + TRUNCATED


# -- the key the database does not hold ----------------------------------------------------------------
def key_id(key: bytes) -> str:
    """A public name of a key (never the key): which key signed a checkpoint."""
    return hashlib.sha256(b"gpufleet-audit-key-id:" + key).hexdigest()[:16]


def _read_key(path: Path) -> bytes:
    return read_hex_key(path, "audit key", "`gpufleet init` makes it (`gpufleet serve` does for a data folder "
                        "initialised by an older version), or restore it from its backup (without it the audit "
                        "log's anchoring cannot be checked)")


@dataclass
class AuditKeyring:
    """The current audit key (signs new records and checkpoints) and retired ones (still verify older records)."""

    current: bytes
    retired: list[bytes] = field(default_factory=list)

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def all(self) -> list[bytes]:
        return [self.current, *self.retired]

    def by_id(self, kid: str) -> bytes | None:
        return next((k for k in self.all() if hmac.compare_digest(key_id(k), kid)), None)

    @staticmethod
    def create(path: Path) -> AuditKeyring:
        """A new random 256-bit key written 0600 (refuses to overwrite)."""
        private_dir(path.parent)
        key = secrets.token_bytes(32)
        create_private_file(path, key.hex().encode() + b"\n")
        return AuditKeyring(key)

    @staticmethod
    def load(path: Path) -> AuditKeyring:
        """The key at ``path`` and every retired key in ``<its folder>/audit-keys-retired/*.key``."""
        current = _read_key(path)
        retired_dir = path.parent / RETIRED_DIR
        retired = [_read_key(p) for p in sorted(retired_dir.glob("*.key"))] if retired_dir.is_dir() else []
        return AuditKeyring(current, retired)

    @staticmethod
    def rotate(path: Path) -> tuple[AuditKeyring, str]:
        """Retire the key at ``path`` (moved to the retired folder, kept: older records still verify) and
        write a new one; returns the new keyring and the retired key's id."""
        old = AuditKeyring.load(path)
        retired_dir = private_dir(path.parent / RETIRED_DIR)
        os.replace(path, retired_dir / f"{old.current_id}.key")
        new = AuditKeyring.create(path)
        return AuditKeyring(new.current, [old.current, *old.retired]), old.current_id


# -- checkpoints outside the database ---------------------------------------------------------------
@dataclass
class Checkpoint:
    kind: str  # "anchor" (anchoring starts here), "checkpoint", "rotate" (signed by the new key)
    seq: int
    hash: str
    ts: float
    key_id: str
    mac: str = ""

    def body(self) -> str:
        return json.dumps({"kind": self.kind, "seq": self.seq, "hash": self.hash, "ts": self.ts,
                           "key_id": self.key_id}, sort_keys=True, separators=(",", ":"))

    def signed(self, key: bytes) -> Checkpoint:
        self.mac = hmac.new(key, b"checkpoint:" + self.body().encode(), hashlib.sha256).hexdigest()
        return self

    def valid(self, key: bytes) -> bool:
        want = hmac.new(key, b"checkpoint:" + self.body().encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, self.mac)

    def line(self) -> str:
        return json.dumps({**json.loads(self.body()), "mac": self.mac}, sort_keys=True, separators=(",", ":"))


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints in ``path`` and a problem per line that is not one."""
    out: list[Checkpoint] = []
    problems: list[str] = []
    try:
        text_ = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    for n, line in enumerate(text_.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(Checkpoint(str(d["kind"]), int(d["seq"]), str(d["hash"]), float(d["ts"]),
                                  str(d["key_id"]), str(d["mac"])))
        except (ValueError, KeyError, TypeError):
            problems.append(f"checkpoint file {path} line {n} is not a checkpoint (the file was edited)")
    return out, problems


@dataclass
class AuditAnchor:
    """Where the anchoring lives: the keyring and the checkpoint file."""

    keyring: AuditKeyring
    checkpoint_file: Path
    interval_s: float = 60.0

    def append(self, cp: Checkpoint) -> None:
        private_dir(self.checkpoint_file.parent)
        fd = os.open(self.checkpoint_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, (cp.line() + "\n").encode())  # one write of one short line: atomic with O_APPEND
            os.fsync(fd)
        finally:
            os.close(fd)


def open_anchor(key_file: Path, checkpoint_file: Path, db: Database, *, interval_s: float = 60.0,
                create: bool = True) -> AuditAnchor:
    """The anchor of the audit log in ``db``. With ``create``, a missing key is made (0600) and an anchor
    checkpoint at the current head is written: records up to it stay unkeyed (written before anchoring)."""
    if key_file.exists() or not create:
        return AuditAnchor(AuditKeyring.load(key_file), checkpoint_file, interval_s)
    keyring = AuditKeyring.create(key_file)
    anchor = AuditAnchor(keyring, checkpoint_file, interval_s)
    seq, head = _head(db)
    anchor.append(Checkpoint("anchor", seq, head, round(time.time(), 6), keyring.current_id).signed(keyring.current))
    if seq:
        log.warning("audit log anchored at record %d with new key %s (%s); the %d earlier records are only "
                    "hash-chained", seq, keyring.current_id, key_file, seq)
    return anchor


def _head(db: Database) -> tuple[int, str]:
    with db.session() as s:
        row = s.execute(select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


class AuditLog:
    def __init__(self, db: Database, anchor: AuditAnchor | None = None) -> None:
        self.db = db
        self.anchor = anchor
        self.last_checkpoint_seq: int | None = None
        self._last_checkpoint_at = 0.0
        if anchor is not None:
            cps, _ = read_checkpoints(anchor.checkpoint_file)
            if cps:
                self.last_checkpoint_seq = cps[-1].seq
                self._last_checkpoint_at = cps[-1].ts

    def append(self, *, user: str, role: str, action: str, target: str, outcome: str, source: str,
               detail: dict[str, Any] | None = None, ts: float | None = None) -> AuditRecord:
        ts = time.time() if ts is None else ts
        detail = dict(detail or {})
        values = {"user": user, "role": role, "action": action, "target": target, "outcome": outcome,
                  "source": source}
        for name, value in values.items():  # never refused for length: stored cut, and said so
            if "\x00" in value:  # PostgreSQL text cannot hold NUL: stored as U+FFFD, and said so
                detail[f"{name}_nul"] = True
                values[name] = value = value.replace("\x00", "\ufffd")
            if len(value) > FIELD_LIMITS[name]:
                detail[f"{name}_length"] = len(value)
                values[name] = clip(value, FIELD_LIMITS[name])
        with _LOCK, self.db.session() as s:
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            last = s.execute(select(AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)).scalar()
            prev = last or GENESIS
            payload = _payload(ts, values["user"], values["role"], values["action"], values["target"],
                               values["outcome"], values["source"], detail)
            digest = keyed_hash(self.anchor.keyring.current, prev, payload) if self.anchor else chain_hash(prev, payload)
            rec = AuditRecord(ts=round(ts, 6), **values, detail=detail, prev_hash=prev, hash=digest)
            s.add(rec)
        if self.anchor is not None and time.time() - self._last_checkpoint_at >= self.anchor.interval_s:
            self.checkpoint()
        return rec

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint(self, now: float | None = None, *, kind: str = "checkpoint", force: bool = False) -> Checkpoint | None:
        """Sign the chain head into the checkpoint file and the service log (skipped when the head has not
        moved since the last one, unless ``force``)."""
        if self.anchor is None:
            return None
        with _LOCK:
            seq, head = _head(self.db)
            if not force and seq == self.last_checkpoint_seq:
                return None
            keyring = self.anchor.keyring
            cp = Checkpoint(kind, seq, head, round(time.time() if now is None else now, 6),
                            keyring.current_id).signed(keyring.current)
            self.anchor.append(cp)
            self.last_checkpoint_seq = seq
            self._last_checkpoint_at = time.time()
        # the same line as in the checkpoint file, so the service log is a second copy outside the database
        log.info("audit checkpoint %s", cp.line(), extra={"audit_seq": seq, "audit_head": head,
                                                          "audit_key_id": cp.key_id, "audit_mac": cp.mac})
        return cp

    def checkpoint_due(self, _now: float) -> None:
        """For the service's scheduler: a checkpoint when records were added since the last one (stamped with
        the wall clock, not the scheduler's, which is simulated in the demo)."""
        self.checkpoint()

    # -- reading -----------------------------------------------------------------------------------
    def search(self, *, since: float | None = None, until: float | None = None, user: str | None = None,
               action: str | None = None, target: str | None = None, limit: int = 100,
               offset: int = 0) -> tuple[list[AuditRecord], int]:
        """Records matching every given filter; ``target`` is a literal substring (``%`` and ``_`` are
        not wildcards), ``action`` a type (``job``) or an exact action (``job.cancel``)."""
        _check_filters(since, until, user, action, target, limit, offset)
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
                q = q.where((AuditRecord.action == action)
                            | AuditRecord.action.startswith(action + ".", autoescape=True))
            if target:
                q = q.where(AuditRecord.target.contains(target, autoescape=True))
            total = int(s.execute(select(func.count()).select_from(q.subquery())).scalar_one())
            rows = s.execute(q.order_by(AuditRecord.seq).offset(offset).limit(limit)).scalars().all()
            return list(rows), total

    def verify(self) -> VerifyResult:
        with self.db.session() as s:
            return verify_records(s, self.anchor)

    def export_csv(self, records: list[AuditRecord]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["seq", "time", "user", "role", "action", "target", "outcome", "source", "detail",
                    "prev_hash", "hash"])
        for r in records:
            w.writerow([r.seq, _iso(r.ts), r.user, r.role, r.action, r.target, r.outcome, r.source,
                        json.dumps(r.detail, sort_keys=True), r.prev_hash, r.hash])
        return buf.getvalue()


MAX_TS = 1e11  # unix seconds (year ~5138): a bound, not a guess about the data
MAX_LIMIT = 1_000_000


def _check_filters(since: float | None, until: float | None, user: str | None, action: str | None,
                   target: str | None, limit: int, offset: int) -> None:
    for name, t in (("since", since), ("until", until)):
        if t is not None and not (math.isfinite(t) and 0 <= t <= MAX_TS):
            raise InputError(f"{name} must be a unix time between 0 and {MAX_TS:.0f}, not {t}")
    for name, v in (("user", user), ("action", action), ("target", target)):
        if v is not None and len(v) > FIELD_LIMITS[name]:
            raise InputError(f"{name} filter is {len(v)} characters long; at most {FIELD_LIMITS[name]}")
        if v is not None and "\x00" in v:
            raise InputError(f"{name} filter contains a NUL character")
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= 2**31 - 1:
        raise InputError(f"limit must be within 1..{MAX_LIMIT} and offset within 0..{2**31 - 1}")


@dataclass
class VerifyResult:
    ok: bool
    records: int
    first_broken_seq: int | None = None
    reason: str | None = None
    anchored: bool = False
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    head_seq: int = 0
    problems: list[str] = field(default_factory=list)


def verify_records(s: Session, anchor: AuditAnchor | None = None) -> VerifyResult:
    """Walk the chain (and, anchored, check every link's HMAC and every checkpoint); every problem found is
    listed in ``problems``; ``first_broken_seq`` / ``reason`` name the first broken link of the chain."""
    cps: list[Checkpoint] = []
    problems: list[str] = []
    legacy_upto = 0
    keys: list[bytes] = []
    if anchor is not None:
        keys = anchor.keyring.all()
        cps, problems = read_checkpoints(anchor.checkpoint_file)
        if not anchor.checkpoint_file.exists():
            problems.append(f"checkpoint file {anchor.checkpoint_file} is missing (deleted?): truncation of "
                            "the log cannot be ruled out")
        anchors = [c for c in cps if c.kind == "anchor"]
        if anchors:
            legacy_upto = anchors[0].seq
        elif cps:
            problems.append(f"checkpoint file {anchor.checkpoint_file} has no anchor entry (it was replaced)")
        good: list[Checkpoint] = []
        for n, c in enumerate(cps, 1):
            key = anchor.keyring.by_id(c.key_id)
            if key is None:
                problems.append(f"checkpoint {n} (record {c.seq}) is signed by unknown key {c.key_id} "
                                "(a retired key was lost, or the checkpoint was forged)")
            elif not c.valid(key):
                problems.append(f"checkpoint {n} (record {c.seq}) has a wrong HMAC (the checkpoint file was edited)")
            else:
                good.append(c)
        cps = good
    first_seq: int | None = None
    reason: str | None = None
    prev = GENESIS
    n = 0
    head = 0
    hashes: dict[int, str] = {}
    want = {c.seq for c in cps}
    for rec in s.execute(select(AuditRecord).order_by(AuditRecord.seq)).scalars():
        n += 1
        head = rec.seq
        if rec.seq in want:
            hashes[rec.seq] = rec.hash
        if first_seq is not None:
            continue
        payload = _payload(rec.ts, rec.user, rec.role, rec.action, rec.target, rec.outcome, rec.source,
                           rec.detail or {})
        if rec.prev_hash != prev:
            first_seq, reason = rec.seq, ("prev_hash does not match the previous record's hash "
                                          "(a record was removed, inserted or reordered)")
        elif anchor is None or rec.seq <= legacy_upto:
            if chain_hash(prev, payload) != rec.hash:
                first_seq, reason = rec.seq, "the record's content does not match its hash (it was changed)"
        elif not any(hmac.compare_digest(keyed_hash(k, prev, payload), rec.hash) for k in keys):
            if chain_hash(prev, payload) == rec.hash:
                first_seq, reason = rec.seq, ("the record's hash is not keyed with the audit key: the chain was "
                                              "recomputed without the key (records were removed, edited or inserted)")
            else:
                first_seq, reason = rec.seq, ("the record's content does not match its HMAC (it was changed, "
                                              "or the chain was recomputed with another key)")
        prev = rec.hash
    if first_seq is not None:
        problems.insert(0, f"record {first_seq}: {reason}")
    for c in cps:
        if c.seq == 0:
            continue
        stamp = _iso(c.ts)
        if c.seq > head:
            problems.append(f"truncated: the log ends at record {head} but the checkpoint of {stamp} vouches "
                            f"for record {c.seq}: records {head + 1}..{c.seq} (at least) were deleted")
        elif c.seq not in hashes:
            problems.append(f"record {c.seq}, vouched for by the checkpoint of {stamp}, is missing (deleted)")
        elif not hmac.compare_digest(hashes[c.seq], c.hash):
            problems.append(f"record {c.seq}'s hash differs from the checkpoint of {stamp}: the chain up to it "
                            "was rewritten")
    seen: set[str] = set()
    problems = [p for p in problems if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    if first_seq is None and problems:
        reason = problems[0]
    return VerifyResult(not problems, n, first_seq, reason, anchored=anchor is not None, checkpoints=len(cps),
                        last_checkpoint_seq=cps[-1].seq if cps else None, head_seq=head, problems=problems)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
