"""CLI: `gpufleet exporter` runs one node's exporter (collection loop + sinks)."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import typer

from gpufleet import wiring
from gpufleet.settings import load_settings


def exporter(
    source: str | None = typer.Option(None, "--source", help="Device source: auto (the NVIDIA and/or AMD GPUs "
                                      "of this node), nvml, amd, or twin (the simulated fleet). Default: "
                                      "exporter.source from settings (auto)."),
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT for /metrics (default 127.0.0.1:19835)."),
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
    twin_node: str | None = typer.Option(None, "--twin-node", help="With --source twin: export only this node "
                                         "of the twin fleet (the same seed gives every process the same fleet)."),
    twin_fault: list[str] = typer.Option([], "--twin-fault", help="With --source twin: inject a fault, "
                                         "KIND:GPU_INDEX:AFTER_S (e.g. fall_off_bus:0:5); repeatable."),
) -> None:
    """Run one node's exporter: collect GPU telemetry every --interval seconds in the background and
    serve the latest snapshot on /metrics for Prometheus; optionally also write every snapshot to
    InfluxDB (buffered on disk through outages) and to the embedded history store.

    Without an NVIDIA driver, use --source twin to export the simulated fleet.

    Example: gpufleet exporter --source twin --listen 127.0.0.1:19835 --names dcgm --interval 5
    """
    from gpufleet.exporter.loop import CollectionLoop, tune_process
    from gpufleet.exporter.sinks.base import Sink
    from gpufleet.exporter.sinks.prometheus import PrometheusSink
    from gpufleet.exporter.sinks.web import MetricsServer, parse_listen

    wanted = [c.strip() for c in collectors.split(",") if c.strip()] if collectors else None
    settings = load_settings(config, {
        "exporter": {"source": source, "listen": listen, "names": names, "interval": interval, "collectors": wanted},
        "influx": {"url": influx_url, "token": influx_token, "org": influx_org, "bucket": influx_bucket},
        "store": {"path": store},
        "twin": {"node": twin_node, "faults": twin_fault or None},
    })
    ex = settings.exporter
    host, port = parse_listen(ex.listen)
    web = wiring.web_config(settings, web_config)
    src = wiring.open_source(settings, ex.collectors)  # no driver: one red line pointing at --source twin
    sinks: list[Sink] = []
    try:
        sinks = [*wiring.build_sinks(settings), wiring.node_info_sink(settings)]
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
