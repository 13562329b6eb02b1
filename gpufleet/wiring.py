"""Build the parts a deployable runs from its settings: source, sinks, alert engine, job queue, API.

`gpufleet exporter` and `gpufleet serve` both build their source and sinks here, so the two cannot drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.schema import Device
from gpufleet.settings import Settings


def open_source(settings: Settings, collectors: list[str] | None = None) -> Any:
    """Build and open the configured source: the digital twin, or NVML / AMD SMI / both (auto).

    No driver or library: SourceUnavailable names the reason and points at ``--source twin``.
    """
    ex = settings.exporter
    if ex.source == "twin":
        from gpufleet.simulator.twin import TwinConfig, TwinSource

        tw = settings.twin
        config = TwinConfig(nodes=tw.nodes, gpus_per_node=tw.gpus_per_node, seed=tw.seed,
                            inventory=tw.inventory, failures=tw.failures)
        config.validate()
        src: Any = TwinSource(config, speed=tw.speed)
        src.open()
        return src
    from gpufleet.exporter.sources import auto

    return auto.open_source(ex.source, collectors=collectors, node=ex.node_name, proc_root=ex.proc_root,
                            amd_pcie_throughput=ex.amd_pcie_throughput)


def web_config(settings: Settings, path: Path | None) -> Any:
    """TLS / basic auth for /metrics from a web-config file or the exporter settings."""
    from gpufleet.exporter.sinks.web import WebConfig, load_web_config

    if path is not None:
        return load_web_config(path)
    ex = settings.exporter
    cfg = WebConfig()
    if ex.tls_cert or ex.tls_key:
        if not (ex.tls_cert and ex.tls_key):
            raise ConfigError("exporter.tls_cert and exporter.tls_key go together")
        cfg.cert_file, cfg.key_file = ex.tls_cert, ex.tls_key
    if ex.basic_auth_user:
        if ex.basic_auth_password_hash is None:
            raise ConfigError("exporter.basic_auth_user needs exporter.basic_auth_password_hash")
        cfg.users = {ex.basic_auth_user: ex.basic_auth_password_hash.get_secret_value()}
    return cfg


def store_path(settings: Settings, data_dir: Path | None = None) -> Path | None:
    if settings.store.path:
        return Path(settings.store.path)
    return data_dir / "history" if data_dir is not None else None


def build_sinks(settings: Settings, default_store: Path | None = None) -> list[Any]:
    """InfluxDB (if a URL is set) and the history store (its path, or ``default_store``)."""
    sinks: list[Any] = []
    try:
        inf = settings.influx
        if inf.url:
            from gpufleet.exporter.sinks.influx import InfluxSink

            sinks.append(InfluxSink(
                inf.url, inf.buffer_dir or settings.data_dir / "influx-buffer",
                token=inf.token.get_secret_value() if inf.token else None, org=inf.org, bucket=inf.bucket,
                batch_size=inf.batch_size, flush_interval=inf.flush_interval,
                buffer_max_points=inf.buffer_max_points, overflow=inf.overflow))
        path = settings.store.path or default_store
        if path:
            from gpufleet.exporter.sinks.store import StoreSink

            st = settings.store
            sinks.append(StoreSink(path, raw_retention_days=st.raw_retention_days,
                                   minute_retention_days=st.minute_retention_days,
                                   hour_retention_days=st.hour_retention_days))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks


def build_alert_engine(settings: Settings, data_dir: Path) -> Any:
    from gpufleet.alerting.setup import build_engine

    return build_engine(settings.alerting, data_dir)


class SilenceAdapter:
    """The API's silence service over the alert engine's silence store."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def add(self, matchers: dict[str, str], ends_at: float, comment: str, created_by: str) -> dict[str, Any]:
        from gpufleet.alerting.silences import parse_matcher

        ms = [parse_matcher(f"{k}={v}") for k, v in sorted(matchers.items())]
        now = time.time()
        s = self.engine.silences.add(ms, now, ends_at, created_by=created_by, comment=comment, now=now)
        return self._public(s)

    def list(self) -> list[dict[str, Any]]:
        return [self._public(s) for s in self.engine.silences.active(time.time())]

    def expire(self, silence_id: str) -> None:
        self.engine.silences.expire(silence_id, time.time())

    @staticmethod
    def _public(s: Any) -> dict[str, Any]:
        return {"id": s.id, "matchers": {m.name: m.value for m in s.matchers}, "comment": s.comment,
                "created_by": s.created_by, "starts_at": s.starts_at, "ends_at": s.ends_at}


class AlertAdapter:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def alerts(self) -> list[dict[str, Any]]:
        out = []
        for a in [*self.engine.firing(), *self.engine.pending()]:
            out.append({"name": a.rule, "state": a.state, "severity": a.labels.get("severity", ""),
                        "labels": dict(a.labels), "annotations": dict(a.annotations),
                        "value": a.value, "since": a.active_since})
        return out


def cluster_from_devices(devices: list[Device]) -> Any:
    """The allocator's cluster state for a fleet of devices (MIG instances left out)."""
    from gpufleet.allocator.state import ClusterState, NodeSpec

    by_node: dict[str, list[Device]] = {}
    for d in devices:
        if not d.is_mig:
            by_node.setdefault(d.node, []).append(d)
    specs = []
    for node, devs in sorted(by_node.items()):
        devs.sort(key=lambda d: d.index)
        specs.append(NodeSpec(node, 64000, 262144, len(devs), devs[0].model, devs[0].memory_total_bytes, None,
                              [d.uuid for d in devs]))
    return ClusterState.from_specs(specs)


def build_job_service(settings: Settings, devices: list[Device], data_dir: Path,
                      clock: Callable[[], float]) -> Any:
    from gpufleet.allocator.policies import make_policy
    from gpufleet.allocator.queue import JobQueue
    from gpufleet.jobs import QueueJobService

    al = settings.allocator
    state = cluster_from_devices(devices)
    kwargs: dict[str, Any] = {"risk_weight": al.risk_weight} if al.policy == "default" else {}
    policy = make_policy(al.policy, seed=0, **kwargs)
    queue = JobQueue.load(al.queue_path or data_dir / "allocator" / "queue.json", state, policy,
                          aging_per_hour=al.aging_per_hour)
    return QueueJobService(queue, clock=clock)


def build_api(settings: Settings, ctx: Any, metrics: Callable[[], list[bytes]] | None,
              extra: list[tuple[Any, dict[tuple[str, str], frozenset[str]]]] | None = None) -> Any:
    from gpufleet.api.app import create_app
    from gpufleet.api.server import ApiServer

    def exposition() -> tuple[bytes, str]:
        return b"".join(metrics()) if metrics else b"", "text/plain; version=0.0.4; charset=utf-8"

    app = create_app(ctx, cors_origins=settings.api.cors_origins or None, metrics=exposition if metrics else None,
                     extra=extra)
    return ApiServer(app, settings.api.listen, tls_cert=settings.api.tls_cert, tls_key=settings.api.tls_key,
                     tls_min_version=settings.api.tls_min_version)
