"""Tables of the control plane's state: queue, jobs, their transitions and placements, usage, operator
overrides, silences and alert state. They live in the service's database beside users and audit
(``gpufleet.api.db``); the schema is created and upgraded by the Alembic migrations in ``migrations/``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class StateBase(DeclarativeBase):
    metadata = MetaData()


class JobRow(StateBase):
    """One job: the queryable fields as columns, the whole record (spec, placements, counters) as JSON."""

    __tablename__ = "jobs"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    team: Mapped[str] = mapped_column(String(64))
    submitted: Mapped[float] = mapped_column(Float)
    started: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class JobTransition(StateBase):
    """A job's state change (``from_state`` empty for its submission)."""

    __tablename__ = "job_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(256), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float, index=True)


class AllocationRow(StateBase):
    """A GPU (or share of one) a running job holds."""

    __tablename__ = "allocations"
    job: Mapped[str] = mapped_column(String(256), primary_key=True)
    uuid: Mapped[str] = mapped_column(String(128), primary_key=True)
    node: Mapped[str] = mapped_column(String(256), index=True)
    milli: Mapped[int] = mapped_column(Integer)


class UsageRow(StateBase):
    """One stretch of GPU time a job held (for cost reports)."""

    __tablename__ = "job_usage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(256), index=True)
    user: Mapped[str] = mapped_column(String(64))
    team: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(64))
    gpus: Mapped[float] = mapped_column(Float)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    uuids: Mapped[list[str]] = mapped_column(JSON)


class QueueMeta(StateBase):
    """Small named values: the queue's sequence and counters."""

    __tablename__ = "queue_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class OverrideRow(StateBase):
    """An operator's cordon / drain / offline of a GPU (kind ``gpu``, target uuid) or node (``node``, name)."""

    __tablename__ = "operator_overrides"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    target: Mapped[str] = mapped_column(String(256), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(1024))
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)


class SilenceRow(StateBase):
    """A silence, stored as the alert engine's dict (the matcher schema is the engine's)."""

    __tablename__ = "silences"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class AlertStateRow(StateBase):
    """One alert's state (``kind`` ``alert``) or a notification group's last send time (``group``)."""

    __tablename__ = "alert_state"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    data: Mapped[Any] = mapped_column(JSON)


Index("ix_jobs_status_seq", JobRow.status, JobRow.seq)
