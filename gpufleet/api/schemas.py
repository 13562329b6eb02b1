"""Request and response schemas: Create / Update / Public kept apart."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    health: str = Field("ok", description="ok, lost, or unknown (fleet mode: its node's exporter is silent)")
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
    """One job of a batch. A field this API does not know is refused (422), never dropped."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="URL-safe: letters, digits, '.', '_', '-'")
    command: list[str] | None = Field(None, max_length=4096, description="argv to run; none: a placeholder on the "
                                      "simulated clock (duration_s)")
    image: str | None = Field(None, max_length=512, description="container image (Kubernetes executor)")
    env: dict[str, str] = Field(default_factory=dict, max_length=256)
    workdir: str | None = Field(None, max_length=4096)
    task_type: Literal["training", "inference", "rendering", "batch"] | None = Field(
        None, description="defaults for priority, preemptible, gang and checkpointing come from settings")
    gpus: float = Field(1, gt=0, le=10_000, description="GPU count, or a fraction (0 < x < 1) of one GPU")
    gpu_memory_bytes: int | None = Field(None, ge=0)
    gpu_types: list[str] | None = Field(None, max_length=32)
    priority: Literal["batch", "normal", "high", "critical"] | None = None
    gang: bool | None = None
    preemptible: bool | None = None
    checkpointing: bool | None = None
    checkpoint_interval_s: float | None = Field(None, gt=0)
    max_runtime_s: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0, le=100)
    retry_backoff_s: float | None = Field(None, ge=0, le=86400)
    depends_on: list[str] = Field(default_factory=list, max_length=256)
    on_failure: Literal["block", "continue"] | None = Field(None, description="when a dependency fails")
    duration_s: float | None = Field(None, gt=0, description="simulated executor only")
    client_id: str | None = Field(None, max_length=128, description="your id for this job inside the batch, for depends_on")


class JobBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
    node: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    task_type: str = "batch"
    command: list[str] = Field(default_factory=list)
    image: str | None = None
    restarts: int = 0
    preemptible: bool = False
    checkpointing: bool = False


class JobLogs(BaseModel):
    job_id: str
    offset: int
    next_offset: int
    text: str


class AllocationPublic(BaseModel):
    job_id: str
    job_name: str | None = None
    user: str | None = None
    uuid: str
    node: str
    share: float


class AllocationTotals(BaseModel):
    """Fleet-wide allocation, anonymised (no job ids, names or users): what every role may see."""

    jobs: int
    gpus: int
    share: float


class AllocationPage(Page[AllocationPublic]):
    """``items``: every allocation (admins, auditors) or the caller's own (developers); ``fleet``: everyone's."""

    fleet: AllocationTotals


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


class SilenceMatcherPublic(BaseModel):
    """One label matcher as stored: ``name op value``, op ``=``, ``!=``, ``=~`` or ``!~``."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str


class SilenceMatcher(BaseModel):
    """One label matcher, as in Alertmanager; regexes are anchored at both ends (``gpu-0.*`` must match the
    whole label value). A field it does not know is refused (422), never dropped."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                      description="label name: alertname, node, uuid, severity...")
    op: Literal["=", "!=", "=~", "!~"] = Field("=", description="equal, not equal, regex match, regex non-match")
    value: str = Field("", max_length=1024)

    @model_validator(mode="after")
    def _valid_regex(self) -> SilenceMatcher:
        from gpufleet.alerting.silences import Matcher
        from gpufleet.exporter.errors import ConfigError

        try:
            Matcher(self.name, self.value, self.op)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class SilenceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: list[SilenceMatcher] = Field(min_length=1, max_length=64,
                                           description="every matcher must match for an alert to be silenced")
    duration_s: float = Field(gt=0, le=90 * 86400)
    comment: str = Field("", max_length=1024)

    @model_validator(mode="after")
    def _not_match_all(self) -> SilenceCreate:
        from gpufleet.alerting.silences import Matcher, check_silence_matchers
        from gpufleet.exporter.errors import ConfigError

        try:
            check_silence_matchers([Matcher(m.name, m.value, m.op) for m in self.matchers])
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class SilencePublic(BaseModel):
    id: str
    matchers: list[SilenceMatcherPublic]
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
    anchored: bool = False
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    head_seq: int = 0
    problems: list[str] = []
