"""`gpufleet serve`: one daemon that wires everything and starts and stops it together.

source (NVML or the twin) → collection loop → sinks (/metrics, InfluxDB, history store)
                                          ↘ per cycle: alert engine, allocator queue, the API's fleet view
scheduled analytics (score failure risk, forecast demand, retrain) → exported metrics, the API, the allocator
the API (FastAPI + uvicorn) over the same state.

SIGTERM stops the API, the scheduler and the loop, flushes the sinks and persists the queue and the
alert state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.api.backend import FleetState
from gpufleet.exporter.errors import GpufleetError
from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.base import Sink
from gpufleet.settings import Settings, masked

log = logging.getLogger("gpufleet.service")


@dataclass
class PeriodicTask:
    """A job the scheduler runs every ``interval`` seconds; failures are logged and counted, never fatal."""

    name: str
    interval: float
    run: Callable[[float], Any]
    last_run: float = 0.0
    last_ok: float | None = None
    runs: int = 0
    failures: int = 0
    last_error: str | None = None

    def due(self, now: float) -> bool:
        return now - self.last_run >= self.interval


@dataclass
class Scheduler:
    tasks: list[PeriodicTask] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_due(self, now: float) -> None:
        for task in self.tasks:
            if not task.due(now):
                continue
            task.last_run = now
            task.runs += 1
            try:
                task.run(now)
                task.last_ok = now
                task.last_error = None
            except Exception as exc:  # a failing analytics job must not stop the service
                task.failures += 1
                task.last_error = str(exc)
                log.exception("scheduled task %s failed", task.name)

    def start(self, clock: Callable[[], float], tick: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.wait(tick):
                self.run_due(clock())
        self._thread = threading.Thread(target=loop, name="gpufleet-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


class CycleHook(Sink):
    """A loop sink that runs the per-cycle work: API view, allocator queue, alert engine."""

    name = "service"

    def __init__(self, service: Service) -> None:
        self.service = service

    def write(self, snapshot: Snapshot) -> None:
        self.service.on_snapshot(snapshot)


class Service:
    """Everything `gpufleet serve` runs, built from one Settings object."""

    def __init__(self, settings: Settings, *, source: Any = None, clock: Callable[[], float] = time.time,
                 with_api: bool = True) -> None:
        from gpufleet import wiring
        from gpufleet.exporter.loop import CollectionLoop
        from gpufleet.exporter.sinks.prometheus import PrometheusSink
        from gpufleet.exporter.sinks.web import MetricsServer, parse_listen

        self.settings = settings
        self.clock = clock
        self.data_dir = Path(settings.data_dir)
        from gpufleet.api.private_files import private_dir

        private_dir(self.data_dir)  # 0700: the database, keys and audit evidence live here
        self.fleet = FleetState(settings=masked(settings))
        if source is not None:
            source.open()
        self.fleet_mode = source is None and bool(settings.fleet.url)  # the whole fleet from Prometheus / VM
        self.source = source or (wiring.open_fleet(settings) if self.fleet_mode else wiring.open_source(settings))
        try:
            self.sinks = wiring.build_sinks(settings, default_store=self.data_dir / "history")
            self.store_path = wiring.store_path(settings, self.data_dir)
            self.loop = CollectionLoop(self.source, interval=settings.exporter.interval, sinks=self.sinks,
                                       clock=clock)
            self.prom = PrometheusSink(self.loop, names=settings.exporter.names)
            from gpufleet.metrics import ServiceMetrics

            self.metrics = ServiceMetrics(self)
            host, port = parse_listen(settings.serve.metrics_listen)
            self.metrics_server = MetricsServer(self.render_metrics, host, port,
                                                web=wiring.web_config(settings, None))
            self.engine = wiring.build_alert_engine(settings, self.data_dir)
            self.jobs = wiring.build_job_service(settings, self.source.devices(), self.data_dir, clock,
                                                 capacity=self.source.capacity() if self.fleet_mode else None)
            self.fleet.jobs = self.jobs
            self.fleet.gpu_state.update(self.jobs.gpu_overrides())  # operator overrides held across restarts
            self.fleet.silences = wiring.SilenceAdapter(self.engine)
            self.fleet.alert_source = wiring.AlertAdapter(self.engine)
            self.loop.add_sink(CycleHook(self))
            from gpufleet.tasks import Analytics, analytics_tasks

            self.analytics: Analytics
            self.scheduler = Scheduler(analytics_tasks(self))
            self.store_sink = next((s for s in self.sinks if getattr(s, "name", "") == "store"), None)
            from gpufleet.cluster import ClusterLink

            self.cluster = ClusterLink(self)
            self.scheduler.tasks += self.cluster.tasks()
            self.api = None
            if with_api:
                from gpufleet.api.context import build_context

                ctx = build_context(settings.api, self.data_dir, fleet=self.fleet, settings_view=self.fleet.settings)
                self.cluster.audit = self.audit = ctx.audit
                self.jobs.audit = ctx.audit  # every job state transition is audited
                self.scheduler.tasks.append(PeriodicTask("audit_checkpoint", settings.api.audit_checkpoint_interval,
                                                         ctx.audit.checkpoint_due))  # signed chain head
                self.api = wiring.build_api(settings, ctx, self.render_metrics, extra=self.cluster.routers())
        except BaseException:
            self.source.close()
            raise
        self._stopped = threading.Event()

    # -- per cycle -------------------------------------------------------------------------------
    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.fleet.update_snapshots([snapshot])
        now = snapshot.ts
        if self.store_sink is not None:  # demand and risk history beside the telemetry
            try:
                self.store_sink.write(self.analytics.cycle_samples(snapshot))
            except GpufleetError:
                log.exception("writing analytics samples to the history store failed")
        view = self.source.view if self.fleet_mode else None
        if view is not None:
            self.fleet.update_health(view.health)
        try:
            if view is not None:
                self.jobs.observe(snapshot, now, silent=frozenset(view.silent_nodes()))
            else:
                self.jobs.observe(snapshot, now)
        except GpufleetError:
            log.exception("allocator update failed")
        self.metrics.update_idle(snapshot)
        try:
            enriched = self.metrics.with_analytics(snapshot)
            if view is not None:  # per node, as one exporter per node: alerts name the silent node
                from gpufleet.analytics.fleet.model import split_by_node

                self.engine.step(split_by_node(enriched, {n: v.answering for n, v in view.nodes.items()}), now=now)
            else:
                self.engine.step([enriched], now=now)
        except GpufleetError:
            log.exception("alert engine step failed")

    def render_metrics(self) -> list[bytes]:
        # fleet mode: the GPUs' own series are the exporters'; serving them again would count them twice
        own = [] if self.fleet_mode else self.prom.render_chunks()
        return [*own, self.metrics.render(), self.cluster.render()]

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.loop.start()
        self.metrics_server.start()
        self.scheduler.start(self.clock)
        if self.api is not None:
            self.api.start()
        log.info("gpufleet serve started", extra={"metrics": self.metrics_server.url,
                                                   "api": self.api.url if self.api else None})

    def stop(self) -> None:
        """Graceful: API first (no new requests), then scheduler and loop; flush sinks, persist state."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.api is not None:
            self.api.stop()
            self.audit.checkpoint()  # the last records too: a checkpoint of the head at shutdown
        self.scheduler.stop()
        self.loop.stop()  # closes (flushes) the sinks
        self.metrics_server.stop()
        try:
            self.engine.save_state(force=True)
        finally:
            self.jobs.persist()
            self.jobs.close()
            self.source.close()
        log.info("gpufleet serve stopped")
