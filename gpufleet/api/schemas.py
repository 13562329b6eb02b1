"""Request and response schemas: Create / Update / Public kept apart."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
Role = Literal["admin", "developer", "auditor"]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


# -- auth ------------------------------------------------------------------------------------------
class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(None, max_length=4096)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class TokenPublic(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


# -- users -----------------------------------------------------------------------------------------
class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=12, max_length=1024)
    role: Role
    team: str | None = Field(None, max_length=64)


class UserUpdate(BaseModel):
    role: Role | None = None
    team: str | None = Field(None, max_length=64)
    disabled: bool | None = None
    password: str | None = Field(None, min_length=12, max_length=1024)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str
    team: str | None
    disabled: bool


# -- fleet -----------------------------------------------------------------------------------------
class ProcessPublic(BaseModel):
    pid: int
    memory_bytes: float | None = None
    container: str | None = None
    pod: str | None = None
    namespace: str | None = None


class GpuPublic(BaseModel):
    uuid: str
    index: int
    node: str
    model: str
    vendor: str
    up: bool
    state: str = Field(description="ok, cordoned or draining")
    utilization: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    risk: dict[str, float] = Field(default_factory=dict, description="failure probability by horizon")
    processes: list[ProcessPublic] = Field(default_factory=list)


class GpuStateChange(BaseModel):
    reason: str = Field("", max_length=512)


# -- jobs ------------------------------------------------------------------------------------------
class JobCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    gpus: float = Field(1, gt=0, le=10_000, description="GPU count, or a fraction (0 < x < 1) of one GPU")
    gpu_memory_bytes: int | None = Field(None, ge=0)
    gpu_types: list[str] | None = Field(None, max_length=32)
    priority: Literal["batch", "normal", "high", "critical"] = "normal"
    gang: bool = True
    preemptible: bool = False
    checkpoint_interval_s: float | None = Field(None, gt=0)
    depends_on: list[str] = Field(default_factory=list, max_length=256)
    duration_s: float | None = Field(None, gt=0)
    client_id: str | None = Field(None, max_length=128, description="your id for this job inside the batch, for depends_on")


class JobBatch(BaseModel):
    jobs: list[JobCreate] = Field(min_length=1, max_length=1000)


class JobPublic(BaseModel):
    id: str
    name: str
    user: str
    team: str | None
    state: str
    gpus: float
    priority: str
    depends_on: list[str]
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    placement: list[str] = Field(default_factory=list, description="GPU uuids")
    reason: str | None = None


class AllocationPublic(BaseModel):
    job_id: str
    uuid: str
    node: str
    share: float


# -- predictions, forecasts, plans ----------------------------------------------------------------
class FailurePredictionPublic(BaseModel):
    uuid: str
    node: str
    horizon: str
    probability: float
    top_signals: list[str] = Field(default_factory=list)


class ForecastPublic(BaseModel):
    series: str
    generated_at: float | None
    step_s: float | None
    quantiles: dict[str, list[float]] = Field(default_factory=dict)
    timestamps: list[float] = Field(default_factory=list)


class CapacityPlanPublic(BaseModel):
    generated_at: float | None
    recommendation: dict[str, Any] = Field(default_factory=dict)


# -- alerts and silences ---------------------------------------------------------------------------
class AlertPublic(BaseModel):
    name: str
    state: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    value: float | None = None
    since: float | None = None


class SilenceCreate(BaseModel):
    matchers: dict[str, str] = Field(min_length=1, description="label -> exact value (alertname, node, uuid...)")
    duration_s: float = Field(gt=0, le=90 * 86400)
    comment: str = Field("", max_length=1024)


class SilencePublic(BaseModel):
    id: str
    matchers: dict[str, str]
    comment: str
    created_by: str
    starts_at: float
    ends_at: float


# -- audit -----------------------------------------------------------------------------------------
class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    ts: float
    user: str
    role: str
    action: str
    target: str
    outcome: str
    source: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditVerifyPublic(BaseModel):
    ok: bool
    records: int
    first_broken_seq: int | None = None
    reason: str | None = None
