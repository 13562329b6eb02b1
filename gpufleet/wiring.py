"""Build the parts a deployable runs from its settings: source, sinks, alert engine, job queue, API.

`gpufleet exporter` and `gpufleet serve` both build their source and sinks here, so the two cannot drift.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpufleet.exporter.errors import ConfigError, GpufleetError
from gpufleet.exporter.schema import Device
from gpufleet.settings import Settings

log = logging.getLogger("gpufleet.wiring")


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
        start = time.time()
        src: Any = TwinSource(config, start=start, speed=tw.speed, node=tw.node)
        for spec in tw.faults:
            kind, index, after = parse_twin_fault(spec)
            for d in src.devices():
                if d.index == index:
                    src.twin.inject_fault(d.uuid, kind, start + after)
        src.open()
        return src
    from gpufleet.exporter.sources import auto

    src = auto.open_source(ex.source, collectors=collectors, node=ex.node_name, proc_root=ex.proc_root,
                           amd_pcie_throughput=ex.amd_pcie_throughput)
    if ex.pod_resources:  # imported only when enabled: grpcio / protobuf are the kubernetes extra's
        from gpufleet.exporter.sources.podresources import wrap

        try:
            src = wrap(src, ex.pod_resources_socket)
        except BaseException:
            src.close()
            raise
    return src


def parse_twin_fault(spec: str) -> tuple[str, int, float]:
    """``KIND:GPU_INDEX:AFTER_S`` (``fall_off_bus:0:5``) -> (kind, index, seconds after start)."""
    from gpufleet.simulator.failures import INJECT_KINDS

    parts = spec.split(":")
    try:
        kind, index, after = parts[0], int(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise ConfigError(f"twin fault must be KIND:GPU_INDEX:AFTER_S (e.g. fall_off_bus:0:5), got {spec!r}") from None
    if kind not in INJECT_KINDS or len(parts) != 3 or index < 0 or after < 0:
        raise ConfigError(f"twin fault {spec!r}: kind must be one of {', '.join(INJECT_KINDS)}, "
                          "GPU_INDEX and AFTER_S >= 0")
    return kind, index, after


def node_info_sink(settings: Settings) -> Any:
    """The exporter's node info (CPUs, memory) for the fleet reader."""
    from gpufleet.exporter.sinks.node import NodeInfoSink

    return NodeInfoSink(settings.exporter.node_name)


def open_fleet(settings: Settings) -> Any:
    """Fleet mode: the fleet reader over ``settings.fleet.url`` as a source, read once (BackendUnavailable
    when the store cannot be reached)."""
    from gpufleet.analytics.fleet.reader import LIVE_FIELDS
    from gpufleet.analytics.fleet.reader import open_fleet as open_reader
    from gpufleet.analytics.fleet.source import FleetSource

    fl = settings.fleet
    if not fl.url:
        raise ConfigError("fleet.url is not set")
    fields = tuple(dict.fromkeys((*LIVE_FIELDS, *alert_fields(settings))))
    reader = open_reader(fl.url, fl.kind, names=fl.names, selector=fl.selector, fields=fields,
                         stale_after=fl.stale_after, timeout=fl.timeout)
    src = FleetSource(reader)
    try:
        src.open()
    except BaseException:
        src.close()
        raise
    return src


def alert_fields(settings: Settings) -> list[str]:
    """Device fields the alert rules read (the fleet reader fetches them every cycle)."""
    from gpufleet.alerting.rules import load_rules
    from gpufleet.exporter.catalogue import catalogue

    al = settings.alerting
    try:
        rules = load_rules(list(al.rule_files), include_pack=al.include_pack)
    except (GpufleetError, OSError):
        return []
    cat = catalogue()
    return sorted({r.metric.field for r in rules.rules if cat.field(r.metric.field).scope == "device"})


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
    from gpufleet.state.service import alert_backends

    silences, alert_state = alert_backends(settings, data_dir)  # rows in the service's database
    return build_engine(settings.alerting, data_dir, silence_backend=silences, state_backend=alert_state)


class SilenceAdapter:
    """The API's silence service over the alert engine's silence store."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def add(self, matchers: list[dict[str, str]], ends_at: float, comment: str, created_by: str) -> dict[str, Any]:
        from gpufleet.alerting.silences import Matcher

        ms = [Matcher.from_dict(m) for m in matchers]  # {name, op, value}: never re-parsed from text
        now = time.time()
        s = self.engine.silences.add(ms, now, ends_at, created_by=created_by, comment=comment, now=now)
        return self._public(s)

    def list(self) -> list[dict[str, Any]]:
        return [self._public(s) for s in self.engine.silences.active(time.time())]

    def expire(self, silence_id: str) -> None:
        self.engine.silences.expire(silence_id, time.time())

    @staticmethod
    def _public(s: Any) -> dict[str, Any]:
        return {"id": s.id, "matchers": [m.to_dict() for m in s.matchers], "comment": s.comment,
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


def cluster_from_devices(devices: list[Device],
                         capacity: dict[str, tuple[float | None, float | None]] | None = None) -> Any:
    """The allocator's cluster state for a fleet of devices (MIG instances left out).

    ``capacity``: node -> (CPUs, memory bytes) as the fleet reports them; without it (one node's own
    source) every node gets this host's CPUs and memory. A node whose capacity nobody reports gets 0
    CPU and memory (GPU-only jobs still fit; a warning names it)."""
    from gpufleet.allocator.state import ClusterState
    from gpufleet.exporter.sinks.node import host_capacity
    from gpufleet.growth import node_specs

    if capacity is None:
        host_cpus, host_mem = host_capacity()
        capacity = {d.node: (host_cpus, host_mem) for d in devices}
    for node in sorted({d.node for d in devices if not d.is_mig}):
        cpus, mem = capacity.get(node, (None, None))
        if cpus is None or mem is None:
            log.warning("node %s reports no %s: run node_exporter or gpufleet's exporter there", node,
                        "CPU count" if cpus is None else "memory")
    return ClusterState.from_specs(node_specs(devices, capacity))


def build_job_service(settings: Settings, devices: list[Device], data_dir: Path,
                      clock: Callable[[], float],
                      capacity: dict[str, tuple[float | None, float | None]] | None = None,
                      audit: Any = None, cluster: Any = None) -> Any:
    """The job service over the allocator's queue in the service's database; ``audit`` (the API's audit
    writer) records every job state transition. ``cluster``: the allocator's cluster state when the caller
    built it (fleet mode: from the stored layout, see ``gpufleet.growth``); default: from ``devices``."""
    from gpufleet.allocator.policies import make_policy
    from gpufleet.jobs import QueueJobService, open_queue

    al = settings.allocator
    state = cluster if cluster is not None else cluster_from_devices(devices, capacity)
    kwargs: dict[str, Any] = {"risk_weight": al.risk_weight} if al.policy == "default" else {}
    policy = make_policy(al.policy, seed=0, **kwargs)
    queue = open_queue(state_database_url(settings, data_dir), state, policy,  # the queue lives in the database
                       legacy_path=al.queue_path or data_dir / "allocator" / "queue.json",
                       aging_per_hour=al.aging_per_hour)
    from gpufleet.jobs import make_executor

    return QueueJobService(queue, clock=clock, executor=make_executor(settings), settings=settings.jobs,
                           data_dir=data_dir, audit=audit)


def state_database_url(settings: Settings, data_dir: Path) -> str:
    from gpufleet.state.service import database_url

    return database_url(settings, data_dir)


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
