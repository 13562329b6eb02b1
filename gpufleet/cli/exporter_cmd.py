"""CLI: `gpufleet exporter` runs one node's exporter (collection loop + sinks)."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from exporter.errors import ConfigError, SourceUnavailable
from gpufleet.settings import Settings, load_settings


def _open_source(settings: Settings, collectors: list[str] | None) -> Any:
    """Build and open the configured source (SourceUnavailable names the reason and points at the twin)."""
    kind = settings.exporter.source
    ex = settings.exporter
    if kind == "twin":
        from simulator.twin import TwinConfig, TwinSource

        tw = settings.twin
        config = TwinConfig(nodes=tw.nodes, gpus_per_node=tw.gpus_per_node, seed=tw.seed,
                            inventory=tw.inventory, failures=tw.failures)
        config.validate()
        src: Any = TwinSource(config, speed=tw.speed)
        src.open()
        return src
    try:  # vendor selection (auto: NVML and/or AMD SMI) where the build has it
        from exporter.sources import auto
    except ImportError:
        auto = None  # type: ignore[assignment]
    if auto is not None:
        return auto.open_source(kind, collectors=collectors, node=ex.node_name, proc_root=ex.proc_root,
                                amd_pcie_throughput=ex.amd_pcie_throughput)
    if kind not in ("nvml", "auto"):
        raise SourceUnavailable(f"source {kind!r} is not available in this build; use --source nvml or twin")
    from exporter.sources.nvml import NvmlSource

    src = NvmlSource(collectors=collectors, node=ex.node_name, proc_root=ex.proc_root)
    src.open()
    return src


def _web_config(settings: Settings, web_config: Path | None) -> Any:
    from exporter.sinks.web import WebConfig, load_web_config

    if web_config is not None:
        return load_web_config(web_config)
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


def exporter(
    source: str | None = typer.Option(None, "--source", help="Device source: auto (the NVIDIA and/or AMD GPUs "
                                      "of this node), nvml, amd, or twin (the simulated fleet). Default: "
                                      "exporter.source from settings (auto)."),
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT for /metrics (default 127.0.0.1:9835)."),
    names: str | None = typer.Option(None, "--names", help="Metric names: native, dcgm (dcgm-exporter "
                                     "compatible names, units and labels) or both."),
    interval: float | None = typer.Option(None, "--interval", help="Collection interval in seconds (1 to 3600; "
                                          "default 10)."),
    collectors: str | None = typer.Option(None, "--collectors", help="Comma-separated collector families, e.g. "
                                          "clocks,power,thermal (default: all)."),
    influx_url: str | None = typer.Option(None, "--influx-url", help="Also write to InfluxDB (v2 write API) at "
                                          "this URL."),
    influx_token: str | None = typer.Option(None, "--influx-token", help="InfluxDB API token."),
    influx_org: str | None = typer.Option(None, "--influx-org", help="InfluxDB organisation."),
    influx_bucket: str | None = typer.Option(None, "--influx-bucket", help="InfluxDB bucket."),
    store: Path | None = typer.Option(None, "--store", help="Also write every snapshot to the embedded history "
                                      "store in this folder."),
    config: Path | None = typer.Option(None, "--config", help="Settings file (TOML)."),
    web_config: Path | None = typer.Option(None, "--web-config", help="TLS / basic-auth file for /metrics "
                                           "(Prometheus exporter-toolkit web-config format)."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds (default: "
                                          "run until interrupted)."),
) -> None:
    """Run one node's exporter: collect GPU telemetry every --interval seconds in the background and
    serve the latest snapshot on /metrics for Prometheus; optionally also write every snapshot to
    InfluxDB (buffered on disk through outages) and to the embedded history store.

    Without an NVIDIA driver, use --source twin to export the simulated fleet.

    Example: gpufleet exporter --source twin --listen 127.0.0.1:9835 --names dcgm --interval 5
    """
    from exporter.loop import CollectionLoop, tune_process
    from exporter.sinks.base import Sink
    from exporter.sinks.prometheus import PrometheusSink
    from exporter.sinks.web import MetricsServer, parse_listen

    wanted = [c.strip() for c in collectors.split(",") if c.strip()] if collectors else None
    settings = load_settings(config, {
        "exporter": {"source": source, "listen": listen, "names": names, "interval": interval, "collectors": wanted},
        "influx": {"url": influx_url, "token": influx_token, "org": influx_org, "bucket": influx_bucket},
        "store": {"path": store},
    })
    ex = settings.exporter
    host, port = parse_listen(ex.listen)
    web = _web_config(settings, web_config)
    src = _open_source(settings, ex.collectors)  # no driver: one red line pointing at --source twin
    sinks: list[Sink] = []
    try:
        inf = settings.influx
        if inf.url:
            from exporter.sinks.influx import InfluxSink

            sinks.append(InfluxSink(
                inf.url, inf.buffer_dir or settings.data_dir / "influx-buffer",
                token=inf.token.get_secret_value() if inf.token else None, org=inf.org, bucket=inf.bucket,
                batch_size=inf.batch_size, flush_interval=inf.flush_interval,
                buffer_max_points=inf.buffer_max_points, overflow=inf.overflow))
        st = settings.store
        if st.path:
            from exporter.sinks.store import StoreSink

            sinks.append(StoreSink(st.path, raw_retention_days=st.raw_retention_days,
                                   minute_retention_days=st.minute_retention_days,
                                   hour_retention_days=st.hour_retention_days))
        loop_filter = ex.collectors if ex.source == "twin" else None  # NVML runs only the chosen collectors
        loop = CollectionLoop(src, interval=ex.interval, sinks=sinks, collectors=loop_filter)
        prom = PrometheusSink(loop, names=ex.names)
        server = MetricsServer(prom.render_chunks, host, port, web=web)
    except BaseException:
        for s in sinks:
            s.close()
        src.close()
        raise
    tune_process()  # short GIL switch interval, fewer GC passes: scrapes stay fast during a cycle
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        loop.start()
        server.start()
        extra = "".join([", influx " + settings.influx.url if settings.influx.url else "",
                         f", store {settings.store.path}" if settings.store.path else ""])
        typer.echo(f"gpufleet exporter: serving {server.url} (source {src.name}, names {ex.names}, "
                   f"every {ex.interval:g} s{extra})")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(duration)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        loop.stop()
        src.close()


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("exporter")(exporter)
