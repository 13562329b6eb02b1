"""The one settings object of gpufleet (pydantic-settings).

Precedence: defaults < config file (TOML, ``--config`` or ``GPUFLEET_CONFIG``) < environment
(``GPUFLEET_<SECTION>__<FIELD>``, e.g. ``GPUFLEET_EXPORTER__INTERVAL=5``) < command-line flags.
This module is the only place that reads environment variables. Sections are plain models so that
library code receives values, never the settings object.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gpufleet.exporter.errors import ConfigError


def _check_listen(value: str) -> str:
    """A listen address is HOST:PORT (":PORT" and "[::1]:PORT" too) with a port from 0 to 65535."""
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be HOST:PORT with a port from 0 to 65535, got {value!r}")
    return value


ListenAddress = Annotated[str, AfterValidator(_check_listen)]


def default_data_dir() -> Path:
    """The XDG base directory spec's data folder: ``$XDG_DATA_HOME/gpufleet`` (an absolute path; a relative one is
    ignored, as the spec says), else ``~/.local/share/gpufleet``. Never the working directory."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "gpufleet"


class ExporterSettings(BaseModel):
    """The per-node exporter: where samples come from and how /metrics serves them."""

    source: Literal["auto", "nvml", "amd", "twin"] = Field(
        "auto", description="device source: nvml, amd, auto (every vendor found) or twin (the simulated fleet)")
    listen: ListenAddress = Field("127.0.0.1:19835", description="HOST:PORT of /metrics (19835: clashes with no common exporter, docs/exporter.md)")
    names: Literal["native", "dcgm", "both"] = Field(
        "native", description="metric names: gpufleet's, dcgm-exporter's (names, units, labels) or both")
    interval: float = Field(10.0, ge=1.0, le=3600.0, description="collection interval in seconds")
    collectors: list[str] | None = Field(None, description="collector families to run (None = all)")
    tls_cert: Path | None = Field(None, description="TLS certificate for /metrics")
    tls_key: Path | None = Field(None, description="TLS key for /metrics")
    basic_auth_user: str | None = Field(None, description="basic-auth user for /metrics")
    basic_auth_password_hash: SecretStr | None = Field(None, description="bcrypt/argon2 hash, web-config style")
    proc_root: Path = Field(Path("/proc"), description="/proc of the host (a DaemonSet mounts the host's)")
    node_name: str | None = Field(None, description="hostname label (default: this host's name)")
    amd_pcie_throughput: bool = Field(False, description="AMD: read PCIe throughput (amdsmi samples ~1 s per GPU)")
    pod_resources: bool = Field(False, description="label GPUs with the Kubernetes pod / container they are "
                                "allocated to, from kubelet's pod-resources API (gpufleet_gpu_pod_info; the kubernetes extra)")
    pod_resources_socket: Path = Field(Path("/var/lib/kubelet/pod-resources/kubelet.sock"),
                                       description="kubelet's pod-resources unix socket (with exporter.pod_resources)")


class InfluxSettings(BaseModel):
    """InfluxDB (or VictoriaMetrics / any line-protocol endpoint) as a second sink."""

    url: str | None = Field(None, description="InfluxDB v2 write URL base; unset: no InfluxDB sink")
    token: SecretStr | None = Field(None, description="InfluxDB API token")
    org: str = Field("gpufleet", description="InfluxDB organisation")
    bucket: str = Field("gpufleet", description="InfluxDB bucket")
    batch_size: int = Field(5000, ge=1, description="points per write")
    flush_interval: float = Field(1.0, gt=0, description="seconds between writes")
    buffer_dir: Path | None = Field(None, description="on-disk outage buffer (default: <data-dir>/influx-buffer)")
    buffer_max_points: int = Field(5_000_000, ge=1000, description="buffer bound; past it the overflow policy applies")
    overflow: Literal["drop_oldest", "drop_newest"] = Field("drop_oldest", description="what a full buffer drops")


class StoreSettings(BaseModel):
    """The embedded history store."""

    path: Path | None = Field(None, description="history store folder (default: <data-dir>/history)")
    raw_retention_days: float = Field(14.0, gt=0, description="days of raw samples kept")
    minute_retention_days: float = Field(90.0, gt=0, description="days of 1-minute rollups kept")
    hour_retention_days: float = Field(730.0, gt=0, description="days of 1-hour rollups kept")


class TwinSettings(BaseModel):
    """The digital twin, when the source is `twin`."""

    nodes: int = Field(4, ge=1, description="simulated nodes")
    gpus_per_node: int = Field(8, ge=1, description="GPUs per node")
    seed: int = Field(7, description="random seed: the same seed gives the same fleet")
    inventory: Path | None = Field(None, description="openb / spot-GPU node list instead of the built-in fleet")
    speed: float = Field(1.0, gt=0, description="simulated seconds per real second")
    failures: bool = Field(True, description="simulate failures")
    node: str | None = Field(None, description="export only this node of the twin fleet (one exporter per node)")
    faults: list[str] = Field(default_factory=list, description="faults to inject, KIND:GPU_INDEX:AFTER_S "
                              "(e.g. fall_off_bus:0:5: GPU 0 of each exported node falls off the bus 5 s in)")


class ApiSettings(BaseModel):
    """The API: listen address, database, tokens, TLS, CORS."""

    listen: ListenAddress = "127.0.0.1:8080"
    database_url: str | None = Field(None, description="SQLAlchemy URL (default: sqlite in <data-dir>/gpufleet.db); "
                                     "postgresql+psycopg://user:pw@host/db for PostgreSQL")
    key_file: Path | None = Field(None, description="JWT signing key (default: <data-dir>/secrets/jwt.key)")
    audit_key_file: Path | None = Field(None, description="HMAC key anchoring the audit chain, kept out of the database "
                                        "(default: <data-dir>/secrets/audit.key)")
    audit_checkpoint_file: Path | None = Field(None, description="append-only signed checkpoints of the audit chain head "
                                               "(default: <data-dir>/audit/checkpoints.jsonl)")
    audit_checkpoint_interval: float = Field(60.0, ge=1, le=86400, description="seconds between audit checkpoints")
    access_token_ttl: int = Field(900, ge=60, le=86400, description="seconds")
    refresh_token_ttl: int = Field(7 * 86400, ge=300, description="seconds")
    login_max_failures: int = Field(5, ge=1)
    login_failure_window: int = Field(900, ge=10, description="seconds")
    login_max_failures_per_source: int = Field(50, ge=1, description="failed logins from one address (IPv6: one /64), all users together, within the window")
    password_hash_time_cost: int = Field(3, ge=1, description="argon2id iterations")
    password_hash_memory_kib: int = Field(65536, ge=8192, description="argon2id memory per hash")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger request bodies are refused (413) before they are read")
    tls_cert: Path | None = Field(None, description="TLS certificate (PEM); with tls_key turns HTTPS on")
    tls_key: Path | None = Field(None, description="TLS private key (PEM)")
    tls_min_version: Literal["1.2", "1.3"] = Field("1.3", description="oldest TLS version accepted")
    cors_origins: list[str] = Field(default_factory=list, description="empty: CORS off")


class AlertRouteSettings(BaseModel):
    """One notification route: label matchers -> apprise URLs (the URLs hold tokens: kept secret)."""

    model_config = {"populate_by_name": True}
    name: str
    urls: list[SecretStr]
    match: list[str] = Field(default_factory=list, description="label matchers: severity=critical, node=~gpu-0.*")
    continue_: bool = Field(False, alias="continue", description="keep matching later routes")


class AlertingSettings(BaseModel):
    enabled: bool = True
    rule_files: list[Path] = Field(default_factory=list, description="extra rule files or folders")
    include_pack: bool = True
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description='per rule (or "*"): threshold, clear, for, window, severity')
    routes: list[AlertRouteSettings] = Field(default_factory=list)
    group_by: list[str] = Field(default_factory=lambda: ["alertname", "node"])
    group_wait: float = Field(0.0, ge=0)
    group_interval: float = Field(60.0, ge=0)
    repeat_interval: float = Field(4 * 3600.0, gt=0)
    stale_after: float = Field(30.0, gt=0, description="seconds without a snapshot before a node's data is stale")
    state_dir: Path | None = Field(None, description="alert state and silences files of older versions, imported once into the database (default: <data-dir>/alerting)")
    dashboard_url: str = ""
    retries: int = Field(3, ge=1)
    backoff: float = Field(0.5, ge=0)


class AllocatorSettings(BaseModel):
    policy: str = Field("default", description="placement policy (allocator.policies.POLICY_NAMES)")
    risk_weight: float = Field(1000.0, ge=0, description="placement cost per expected GPU-hour lost to GPU failures")
    aging_per_hour: float = Field(0.25, ge=0, description="priority classes gained per hour waited")
    queue_path: Path | None = Field(None, description="queue file of the offline `gpufleet allocator` commands; serve imports one it finds once into its database (default: <data-dir>/allocator/queue.json)")
    idle_threshold: float = Field(0.05, ge=0, le=1, description="utilisation under which an allocated GPU is idle")
    idle_window_s: float = Field(1800.0, gt=0, description="how long under the threshold before it counts")
    price_basis: str = Field("on_demand", description="price book column for cost: on_demand, spot or a reserved option")


class ClusterSettings(BaseModel):
    """Cluster managers: Slurm and Kubernetes read-out, risk remediation, scheduling advice."""

    slurm_enabled: bool = Field(False, description="read nodes / jobs from Slurm (sinfo, squeue) and act on it")
    slurm_conf: Path | None = Field(None, description="SLURM_CONF for the Slurm commands (default: Slurm's own)")
    slurm_bin_dir: Path | None = Field(None, description="folder of sinfo / squeue / scontrol (default: PATH)")
    slurm_timeout: float = Field(10.0, gt=0, le=300, description="seconds per Slurm command")
    poll_interval: float = Field(60.0, ge=5, description="seconds between reads of the cluster manager")
    kubernetes_enabled: bool = Field(False, description="taint / cordon and label Kubernetes GPU nodes")
    kubernetes_mode: Literal["taint", "cordon"] = Field("taint", description="how a risky node is held")
    kubernetes_kubeconfig: Path | None = Field(None, description="kubeconfig file (default: in-cluster config)")
    kubernetes_label_selector: str = Field("nvidia.com/gpu.present=true", description="GPU nodes to manage")
    kubernetes_timeout: float = Field(10.0, gt=0, le=300, description="seconds per Kubernetes API call")
    remediation_threshold: float = Field(0.5, ge=0, le=1, description="hold a node when a GPU's risk reaches this")
    remediation_resume_below: float = Field(0.25, ge=0, le=1, description="release it when risk falls below this")
    remediation_horizon: str = Field("24h", description="failure-risk horizon remediation uses")
    remediation_max_share: float = Field(0.1, ge=0, le=1, description="most nodes out of scheduling at once (share)")
    remediation_dry_run: bool = Field(True, description="only report (and audit) what would be done")
    operator_override_s: float = Field(86400.0, ge=0, description="after an operator's resume, leave the node alone")
    extender_enabled: bool = Field(False, description="serve the kube-scheduler extender (/scheduler/filter, /prioritize)")


class TaskTypeDefaults(BaseModel):
    """What a job of one task type gets unless it says otherwise."""

    priority: Literal["batch", "normal", "high", "critical"] = "normal"
    preemptible: bool = False
    gang: bool = True
    checkpointing: bool = False
    checkpoint_interval_s: float = Field(600.0, gt=0)


TaskType = Literal["training", "inference", "rendering", "batch"]


def _task_defaults() -> dict[TaskType, TaskTypeDefaults]:
    return {"training": TaskTypeDefaults(priority="normal", preemptible=True, checkpointing=True),
            "inference": TaskTypeDefaults(priority="high", preemptible=False),
            "rendering": TaskTypeDefaults(priority="normal", preemptible=True),
            "batch": TaskTypeDefaults(priority="batch", preemptible=True)}


class JobsSettings(BaseModel):
    """Jobs: per-task-type defaults, stop grace period, recovery."""

    task_types: dict[Literal["training", "inference", "rendering", "batch"], TaskTypeDefaults] = Field(
        default_factory=_task_defaults, description="defaults per task type (priority, preemptible, gang, checkpointing)")
    default_task_type: Literal["training", "inference", "rendering", "batch"] = "batch"
    grace_s: float = Field(30.0, ge=0, le=3600, description="SIGTERM → SIGKILL wait (time for a last checkpoint)")
    max_runtime_s: float = Field(7 * 86400.0, gt=0, description="longest a job may run unless it says less")
    log_dir: Path | None = Field(None, description="per-job logs (default: <data-dir>/jobs/logs)")
    checkpoint_dir: Path | None = Field(None, description="per-job checkpoint folders (default: <data-dir>/jobs/checkpoints)")
    drain_risk_threshold: float = Field(0.9, ge=0, le=1, description="drain a GPU whose failure risk reaches this")


class ExecutorSettings(BaseModel):
    """Where jobs run: local (this host), celery (a worker per node), slurm, kubernetes or simulated (twin clock)."""

    kind: Literal["local", "celery", "slurm", "kubernetes", "simulated"] = Field("local", description="executor")
    systemd: Literal["auto", "on", "off"] = Field("auto", description="local: run jobs in `systemd-run --scope`")
    celery_broker_url: SecretStr | None = Field(None, description="celery: Redis URL, e.g. redis://host:6379/0")
    celery_result_backend: SecretStr | None = Field(None, description="celery: result backend (default: the broker)")
    heartbeat_s: float = Field(5.0, gt=0, description="celery: worker heartbeat interval")
    heartbeat_timeout_s: float = Field(30.0, gt=0, description="celery: a worker silent this long is dead")
    celery_visibility_timeout_s: float | None = Field(
        None, gt=0, description="celery: broker visibility timeout; must exceed jobs.max_runtime_s "
        "(default: jobs.max_runtime_s + 1 h)")
    celery_worker_concurrency: int = Field(8, ge=1, le=256, description="celery: jobs one worker runs at once "
                                           "(at least the node's GPU count)")
    celery_log_max_bytes: int = Field(64 << 20, ge=4096, description="celery: bytes of a job's log kept in Redis")
    worker_grace_s: float = Field(30.0, ge=0, le=3600, description="celery: SIGTERM → SIGKILL wait for jobs "
                                  "when their worker shuts down")
    slurm_partition: str | None = Field(None, description="slurm: partition for sbatch")
    slurm_account: str | None = Field(None, description="slurm: account for sbatch")
    slurm_gpu_request: Literal["gres", "gpus"] = Field("gres", description="slurm: ask with --gres=gpu:N or --gpus=N")
    slurm_gpu_types: dict[str, str] = Field(default_factory=dict, description="slurm: GPU model -> Slurm GRES type "
                                            "(e.g. NVIDIA A100-SXM4-80GB = a100); unmapped models ask for any GPU")
    poll_interval_s: float = Field(2.0, gt=0, le=300, description="slurm / kubernetes: seconds between state reads "
                                   "(the Slurm commands and API server used are the [cluster] ones)")
    kubernetes_namespace: str = Field("default", description="kubernetes: namespace of the Jobs")
    kubernetes_gpu_resource: Literal["nvidia.com/gpu", "amd.com/gpu"] = "nvidia.com/gpu"
    kubernetes_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="kubernetes: imagePullPolicy of the job containers")
    kubernetes_pin: Literal["nodeName", "nodeSelector"] = Field(
        "nodeSelector", description="kubernetes: pin a Job to the chosen node by nodeName (bypasses the "
        "scheduler) or a kubernetes.io/hostname nodeSelector")
    kubernetes_checkpoint_pvc: str | None = Field(
        None, description="kubernetes: PersistentVolumeClaim mounted for checkpoints (resume across attempts)")


class ServeSettings(BaseModel):
    """What `gpufleet serve` schedules beside collection."""

    score_interval: float = Field(300.0, ge=10, description="seconds between failure-risk scorings of every GPU")
    forecast_interval: float = Field(3600.0, ge=60, description="seconds between demand forecasts")
    retrain_interval: float = Field(86400.0, ge=600, description="seconds between model retrainings")
    retrain_window_days: float = Field(30.0, gt=0, description="history the sliding-window retraining uses")
    risk_horizon: str = Field("24h", pattern=r"^[0-9]+(\.[0-9]+)?[smhdw]$",
                              description="failure-risk horizon the allocator, remediation and alerts use "
                              "(30m, 1h, 24h, 7d); risk the model gives for another horizon is converted")
    metrics_listen: ListenAddress = Field("127.0.0.1:19836", description="HOST:PORT of serve's own /metrics (distinct from the exporter's 19835)")


class FleetSettings(BaseModel):
    """Fleet mode of `gpufleet serve`: inventory, live state and history from Prometheus / VictoriaMetrics."""

    url: str | None = Field(None, description="query URL of the Prometheus / VictoriaMetrics that scrapes the "
                            "exporters (unset: serve collects from its own source)")
    kind: Literal["prometheus", "victoriametrics"] = Field("prometheus", description="what answers at url")
    names: Literal["native", "dcgm", "auto"] = Field("auto", description="gpufleet exporters (native), "
                                                     "dcgm-exporter (dcgm) or whichever is there (auto)")
    selector: str = Field("", description='label matchers of the GPU exporters\' series, e.g. {job="gpu"}')
    stale_after: float = Field(120.0, gt=0, description="a node whose newest `up` is older than this is unknown")
    timeout: float = Field(30.0, gt=0, le=600, description="seconds per query")


class Settings(BaseSettings):
    """Effective settings of one gpufleet deployable."""

    model_config = SettingsConfigDict(env_prefix="GPUFLEET_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir, description="history, queue, alert state, database, keys",
                           json_schema_extra={"doc_default": "$XDG_DATA_HOME/gpufleet or ~/.local/share/gpufleet"})
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_json: bool = Field(False, description="one JSON object per log line (for journald / Loki)")
    exporter: ExporterSettings = ExporterSettings()
    influx: InfluxSettings = InfluxSettings()
    store: StoreSettings = StoreSettings()
    twin: TwinSettings = TwinSettings()
    api: ApiSettings = ApiSettings()
    alerting: AlertingSettings = AlertingSettings()
    serve: ServeSettings = ServeSettings()
    fleet: FleetSettings = FleetSettings()
    allocator: AllocatorSettings = AllocatorSettings()
    cluster: ClusterSettings = ClusterSettings()
    jobs: JobsSettings = JobsSettings()
    executor: ExecutorSettings = ExecutorSettings()

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        v = v.expanduser()
        if v.exists() and not v.is_dir():
            raise ValueError(f"{v} exists and is not a folder")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() merges file < environment < flags itself and passes the result as init values,
        # so the environment is read exactly once, with the documented precedence.
        return (init_settings,)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _env_values(prefix: str = "GPUFLEET_") -> dict[str, Any]:
    """GPUFLEET_A__B=value -> {"a": {"b": "value"}} (pydantic validates the strings)."""
    out: dict[str, Any] = {}
    for key, value in os.environ.items():
        if not key.startswith(prefix) or key == "GPUFLEET_CONFIG":
            continue
        parts = key[len(prefix):].lower().split("__")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_settings(config: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the effective settings: defaults < TOML file < environment < ``overrides`` (CLI flags).

    ``overrides`` uses nested dicts ({"exporter": {"interval": 5}}); ``None`` values are ignored.
    Raises ConfigError naming the file or variable and the field that is wrong.
    """
    values: dict[str, Any] = {}
    config = config or os.environ.get("GPUFLEET_CONFIG")
    if config:
        path = Path(config).expanduser()
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:  # a folder, no permission...
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values = _deep_merge(values, _env_values())
    values = _deep_merge(values, _drop_none(overrides or {}))
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        source = f" (from {config} and GPUFLEET_* variables)" if config else " (from GPUFLEET_* variables or flags)"
        raise ConfigError(f"invalid settings{source}: {problems}") from None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret masked (for `gpufleet config show` and ``GET /settings``):
    SecretStr fields, and inside every URL its password and the values of credential-like query parameters."""
    return _mask_urls(settings.model_dump(mode="json"))  # SecretStr dumps as '**********'


MASK = "***"
_SECRET_QUERY_KEYS = ("token", "password", "passwd", "pass", "pwd", "secret", "key", "apikey", "auth", "sig",
                      "signature", "credential")


def _mask_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


# scheme://user:password@ : the password runs to the last "@" before the query (SQLAlchemy accepts an
# unencoded "/" or "@" in it, so stopping at the first one could show the rest of the password)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):[^?#\s]*@")
_QUERY_PARAM = re.compile(r"(?P<head>[?&;](?P<key>[^=&;#\s]+)=)(?P<value>[^&;#\s]*)")


def mask_url(url: str) -> str:
    """``scheme://user:***@host/path?token=***``: the password of the user-info part and the values of query
    parameters whose names look like credentials are masked; the rest (user, host, path) is kept."""
    out = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", url)
    return _QUERY_PARAM.sub(lambda m: m["head"] + (MASK if _secret_key(m["key"]) else m["value"]), out)


def _secret_key(name: str) -> bool:
    n = name.lower().replace("-", "").replace("_", "")
    return any(s in n for s in _SECRET_QUERY_KEYS)
