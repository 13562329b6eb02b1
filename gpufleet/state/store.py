"""The control plane's state in the database, written row by row.

:class:`StateStore` is the allocator queue's :class:`~gpufleet.allocator.queue.QueueStore`: each queue
operation hands it one :class:`~gpufleet.allocator.queue.QueueChanges` batch, written in one transaction
(upserts of the touched job rows, their allocations, new transitions and usage stretches, changed operator
overrides, the queue's sequence and counters). It is also the alert engine's silence and alert-state
backend (:meth:`silences_backend`, :meth:`alert_backend`). Nothing is rewritten whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from gpufleet.allocator.queue import QueueChanges
from gpufleet.api.db import Database
from gpufleet.exporter.errors import BackendUnavailable
from gpufleet.state.models import (
    AlertStateRow,
    AllocationRow,
    JobRow,
    JobTransition,
    OverrideRow,
    QueueMeta,
    SilenceRow,
    UsageRow,
)

_JOBS: Table = JobRow.__table__  # type: ignore[assignment]
_ALLOC: Table = AllocationRow.__table__  # type: ignore[assignment]
_TRANS: Table = JobTransition.__table__  # type: ignore[assignment]
_USAGE: Table = UsageRow.__table__  # type: ignore[assignment]
_META: Table = QueueMeta.__table__  # type: ignore[assignment]
_OVR: Table = OverrideRow.__table__  # type: ignore[assignment]
_SIL: Table = SilenceRow.__table__  # type: ignore[assignment]
_ALERT: Table = AlertStateRow.__table__  # type: ignore[assignment]


_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert_statement(dialect: str, table: Table) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE for ``table`` (built once per table and dialect)."""
    key = (dialect, table.name)
    stmt = _UPSERTS.get(key)
    if stmt is None:
        keys = [c.name for c in table.primary_key.columns]
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            ins: Any = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sl_insert

            ins = sl_insert(table)
        stmt = _UPSERTS[key] = ins.on_conflict_do_update(
            index_elements=keys, set_={c.name: ins.excluded[c.name] for c in table.columns if c.name not in keys})
    return stmt


def _upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update ``rows`` by primary key, in one statement (executemany)."""
    if not rows:
        return
    name = conn.dialect.name
    if name in ("postgresql", "sqlite"):
        conn.execute(_upsert_statement(name, table), list(rows))
        return
    keys = [c.name for c in table.primary_key.columns]
    for r in rows:  # any other dialect: delete + insert by key (still one transaction)
        conn.execute(delete(table).where(*[table.c[k] == r[k] for k in keys]))
        conn.execute(table.insert(), [dict(r)])


class StateStore:
    """Row-level reads and writes of the control-plane state over a :class:`~gpufleet.api.db.Database`.

    ``node_of`` maps a placement's node index to its name and ``uuid_of`` (node index, GPU slot) to a
    uuid, for the allocations table; the service sets them from its cluster state (:meth:`bind`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._names: list[str] = []
        self._uuids: list[list[str]] = []

    def bind(self, names: list[str], uuids: list[list[str]]) -> None:
        self._names, self._uuids = names, uuids

    def _fail(self, exc: SQLAlchemyError, what: str) -> BackendUnavailable:
        return BackendUnavailable(f"database {self.db.safe_url}: {what} failed: "
                                  f"{getattr(exc, 'orig', None) or exc}")

    # -- the queue ---------------------------------------------------------------------------------
    def write(self, changes: QueueChanges) -> None:
        jobs, allocs, names = [], [], []
        for rec in changes.jobs:
            d = rec.to_dict()
            s = rec.spec
            jobs.append({"name": s.name, "seq": rec.seq, "status": rec.status, "user": s.user, "team": s.team,
                         "submitted": rec.submitted, "started": rec.started, "finished": rec.finished, "record": d})
            names.append(s.name)
            for p in rec.placements:
                for g in p.gpus:
                    allocs.append({"job": s.name, "uuid": self._uuid(p.node, g), "node": self._node(p.node),
                                   "milli": p.milli})
        try:
            with self.db.engine.begin() as conn:
                _upsert(conn, _JOBS, jobs)
                if names:
                    conn.execute(delete(_ALLOC).where(_ALLOC.c.job.in_(names)))
                if allocs:
                    conn.execute(_ALLOC.insert(), allocs)
                if changes.transitions:
                    conn.execute(_TRANS.insert(), [{"job": j, "from_state": a, "to_state": b, "at": t}
                                                  for j, a, b, t in changes.transitions])
                if changes.usage:
                    conn.execute(_USAGE.insert(), [
                        {"job": u.job, "user": u.user, "team": u.team, "gpu_type": u.gpu_type, "gpus": u.gpus,
                         "start": u.start, "end": u.end, "uuids": list(u.uuids)} for u in changes.usage])
                self._write_overrides(conn, changes.overrides)
                _upsert(conn, _META, [{"key": "queue", "value": {"seq": changes.seq, "counters": changes.counters}}])
        except SQLAlchemyError as exc:
            raise self._fail(exc, "writing the queue") from None

    def _write_overrides(self, conn: Connection, overrides: Iterable[tuple[tuple[str, str], Any]]) -> None:
        for (kind, target), o in overrides:
            if o is None:
                conn.execute(delete(_OVR).where(_OVR.c.kind == kind, _OVR.c.target == target))
            else:
                _upsert(conn, _OVR, [{"kind": kind, "target": target, "state": o.health.name.lower(),
                                      "reason": o.reason[:1024], "by": o.by, "at": o.at}])

    def _uuid(self, node: int, gpu: int) -> str:
        try:
            return self._uuids[node][gpu]
        except IndexError:
            return f"{node}/{gpu}"

    def _node(self, node: int) -> str:
        return self._names[node] if node < len(self._names) else str(node)

    def load(self) -> dict[str, Any] | None:
        """The stored queue in ``JobQueue.to_dict``'s shape, or None when nothing was ever stored."""
        try:
            with self.db.engine.connect() as conn:
                meta = conn.execute(select(_META.c.value).where(_META.c.key == "queue")).scalar()
                if meta is None:
                    return None
                jobs = [r for (r,) in conn.execute(select(_JOBS.c.record).order_by(_JOBS.c.seq))]
                usage = [{"job": r.job, "user": r.user, "team": r.team, "gpu_type": r.gpu_type, "gpus": r.gpus,
                          "start": r.start, "end": r.end, "uuids": r.uuids}
                         for r in conn.execute(select(_USAGE).order_by(_USAGE.c.id))]
                overrides = {f"{r.kind}:{r.target}": {"state": r.state, "reason": r.reason, "by": r.by, "at": r.at}
                             for r in conn.execute(select(_OVR))}
        except SQLAlchemyError as exc:
            raise self._fail(exc, "reading the queue") from None
        return {"version": 2, "seq": int(meta["seq"]), "counters": meta.get("counters", {}), "jobs": jobs,
                "usage": usage, "overrides": overrides}

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Stored operator overrides by ``kind:target``."""
        data = self.load()
        return dict(data["overrides"]) if data else {}

    def transitions(self, job: str) -> list[tuple[str | None, str, float]]:
        with self.db.engine.connect() as conn:
            return [(r.from_state, r.to_state, r.at) for r in conn.execute(
                select(_TRANS).where(_TRANS.c.job == job).order_by(_TRANS.c.id))]

    # -- silences and alert state --------------------------------------------------------------------
    def silences_backend(self) -> SilenceBackend:
        return SilenceBackend(self)

    def alert_backend(self) -> AlertStateBackend:
        return AlertStateBackend(self)


class SilenceBackend:
    """Silences as rows, generic over the engine's silence dict (``id``, ``starts_at``, ``ends_at`` + the rest)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def load(self) -> list[dict[str, Any]]:
        try:
            with self.store.db.engine.connect() as conn:
                return [dict(d) for (d,) in conn.execute(select(_SIL.c.data).order_by(_SIL.c.starts_at, _SIL.c.id))]
        except SQLAlchemyError as exc:
            raise self.store._fail(exc, "reading silences") from None

    def put(self, silence: Mapping[str, Any]) -> None:
        row = {"id": str(silence["id"]), "starts_at": float(silence["starts_at"]),
               "ends_at": float(silence["ends_at"]), "data": dict(silence)}
        try:
            with self.store.db.engine.begin() as conn:
                _upsert(conn, _SIL, [row])
        except SQLAlchemyError as exc:
            raise self.store._fail(exc, "writing a silence") from None

    def delete_ended_before(self, t: float) -> None:
        try:
            with self.store.db.engine.begin() as conn:
                conn.execute(delete(_SIL).where(_SIL.c.ends_at < t))
        except SQLAlchemyError as exc:
            raise self.store._fail(exc, "pruning silences") from None


class AlertStateBackend:
    """Alert states and group send times as rows; :meth:`write` takes only what changed."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def load(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        try:
            with self.store.db.engine.connect() as conn:
                rows = list(conn.execute(select(_ALERT)))
        except SQLAlchemyError as exc:
            raise self.store._fail(exc, "reading alert state") from None
        alerts = [dict(r.data) for r in rows if r.kind == "alert"]
        groups = {r.key: float(r.data) for r in rows if r.kind == "group"}
        return alerts, groups

    def write(self, alerts: Sequence[Mapping[str, Any]], removed: Iterable[str], groups: Mapping[str, float]) -> None:
        rows: list[dict[str, Any]] = [{"kind": "alert", "key": str(a["key"]), "data": dict(a)} for a in alerts]
        rows += [{"kind": "group", "key": k, "data": float(v)} for k, v in groups.items()]
        gone = list(removed)
        try:
            with self.store.db.engine.begin() as conn:
                _upsert(conn, _ALERT, rows)
                if gone:
                    conn.execute(delete(_ALERT).where(_ALERT.c.kind == "alert", _ALERT.c.key.in_(gone)))
        except SQLAlchemyError as exc:
            raise self.store._fail(exc, "writing alert state") from None
