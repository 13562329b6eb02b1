"""`gpufleet serve`: one daemon that wires everything and starts and stops it together.

source (NVML, the twin, or the fleet's Prometheus / VictoriaMetrics) → collection loop → sinks (/metrics,
InfluxDB, history store) ↘ per cycle (:class:`Cycle`): the fleet view, the job queue, the alert engine
scheduled analytics (score failure risk, forecast demand, retrain) → exported metrics, the API, the allocator
the API (FastAPI + uvicorn) over the same state.

:func:`build_service` is the one composition root: it builds every part with the narrow collaborators
it needs (the latest-snapshot callable, the fleet view, the job service, the audit writer) in dependency
order, so nothing is attached to a part after it is built. `serve` starts the result on the wall clock;
`gpufleet demo` drives the same service on the twin with a simulated clock (:meth:`Service.step`).

SIGTERM stops the API, the scheduler and the loop, flushes the sinks and persists the queue and the
alert state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpufleet.api.backend import FleetState, FleetView
from gpufleet.cluster import ClusterLink
from gpufleet.exporter.errors import GpufleetError
from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.base import Sink
from gpufleet.metrics import ModelStats, ServiceMetrics
from gpufleet.scheduler import PeriodicTask, Scheduler
from gpufleet.settings import Settings, masked
from gpufleet.tasks import Analytics, fleet_history_reader, store_history_reader

if TYPE_CHECKING:
    from gpufleet.api.audit import AuditLog
    from gpufleet.jobs import QueueJobService

log = logging.getLogger("gpufleet.service")

__all__ = ["Cycle", "PeriodicTask", "Scheduler", "Service", "build_service"]


class Cycle(Sink):
    """A loop sink that runs the per-cycle work: fleet view, demand history, job queue, alert engine."""

    name = "service"

    def __init__(self, *, view: FleetView, jobs: QueueJobService, metrics: ServiceMetrics, engine: Any,
                 analytics_samples: Callable[[Snapshot], Snapshot], store_sink: Any = None,
                 fleet_reader: Callable[[], Any] = lambda: None,
                 grow: Callable[[Any], Any] = lambda view: None) -> None:
        self.view = view
        self.jobs = jobs
        self.metrics = metrics
        self.engine = engine
        self.analytics_samples = analytics_samples
        self.store_sink = store_sink
        self.fleet_reader = fleet_reader  # fleet mode: the reader's view (health, silent nodes) of this cycle
        self.grow = grow  # fleet mode: GPUs / nodes first seen this cycle join the allocator's cluster

    def write(self, snapshot: Snapshot) -> None:
        self.view.update_snapshots([snapshot])
        now = snapshot.ts
        if self.store_sink is not None:  # demand and risk history beside the telemetry
            try:
                self.store_sink.write(self.analytics_samples(snapshot))
            except GpufleetError:
                log.exception("writing analytics samples to the history store failed")
        reader = self.fleet_reader()
        if reader is not None:
            self.view.update_health(reader.health)
        try:
            if reader is not None:
                self.grow(reader)
                self.jobs.observe(snapshot, now, silent=frozenset(reader.silent_nodes()))
            else:
                self.jobs.observe(snapshot, now)
        except GpufleetError:
            log.exception("allocator update failed")
        self.metrics.update_idle(snapshot)
        try:
            enriched = self.metrics.with_analytics(snapshot)
            if reader is not None:  # per node, as one exporter per node: alerts name the silent node
                from gpufleet.analytics.fleet.model import split_by_node

                self.engine.step(split_by_node(enriched, {n: v.answering for n, v in reader.nodes.items()}), now=now)
            else:
                self.engine.step([enriched], now=now)
        except GpufleetError:
            log.exception("alert engine step failed")

    def close(self) -> None:  # the loop closes its sinks; this one owns nothing
        return None


@dataclass
class Service:
    """Everything `gpufleet serve` runs, as :func:`build_service` built it."""

    settings: Settings
    clock: Callable[[], float]
    data_dir: Path
    source: Any
    fleet_mode: bool
    fleet: FleetView
    loop: Any
    prom: Any
    sinks: list[Any]
    store_path: Path | None
    engine: Any
    jobs: QueueJobService
    stats: ModelStats
    metrics: ServiceMetrics
    analytics: Analytics
    cluster: ClusterLink
    scheduler: Scheduler
    metrics_server: Any
    audit: AuditLog | None = None
    api: Any = None
    _started: bool = False
    _stopped: threading.Event = field(default_factory=threading.Event)

    def render_metrics(self) -> list[bytes]:
        return exposition(self.fleet_mode, self.prom, self.metrics, self.cluster)

    # -- driven by a simulated clock (the demo) ------------------------------------------------------
    def step(self, now: float) -> Snapshot | None:
        """One cycle at time ``now``: collect (the per-cycle work runs as the loop's sink), then every
        scheduled task that is due, waiting for the long ones (a simulated clock has time for them)."""
        snap = self.loop.collect_once(now)
        self.scheduler.run_due(now)
        self.scheduler.wait_long()
        return snap

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
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
        if self.api is not None and self._started:
            self.api.stop()
        if self.audit is not None:
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


def exposition(fleet_mode: bool, prom: Any, metrics: ServiceMetrics, cluster: ClusterLink) -> list[bytes]:
    """/metrics of the service: the GPUs' series (not in fleet mode: there they are the exporters', and
    serving them again would count them twice), the service's own, the cluster link's."""
    own = [] if fleet_mode else prom.render_chunks()
    return [*own, metrics.render(), cluster.render()]


def build_service(settings: Settings, *, source: Any = None, clock: Callable[[], float] = time.time,
                  with_api: bool = True, failure_model: Callable[[], Any] | None = None) -> Service:
    """The composition root: every part of the service, built from one Settings object.

    ``source``: an opened-here source (the demo's twin, tests); default: the fleet reader when
    ``fleet.url`` is set, else the configured local source. ``with_api``: the API and its audit log
    (they need the data folder's signing key: `gpufleet init`). ``failure_model``: what retraining fits
    (default: the LSTM predictor with its defaults; the demo trains a shorter one)."""
    from gpufleet import wiring
    from gpufleet.api.private_files import private_dir
    from gpufleet.exporter.loop import CollectionLoop
    from gpufleet.exporter.sinks.prometheus import PrometheusSink
    from gpufleet.exporter.sinks.web import MetricsServer, parse_listen

    data_dir = Path(settings.data_dir)
    private_dir(data_dir)  # 0700: the database, keys and audit evidence live here
    fleet_mode = source is None and bool(settings.fleet.url)  # the whole fleet from Prometheus / VM
    if source is not None:
        source.open()
    else:
        source = wiring.open_fleet(settings) if fleet_mode else wiring.open_source(settings)
    try:
        view = FleetView()
        sinks = wiring.build_sinks(settings, default_store=data_dir / "history")
        store_path = wiring.store_path(settings, data_dir)
        loop = CollectionLoop(source, interval=settings.exporter.interval, sinks=sinks, clock=clock)
        latest = loop.latest
        engine = wiring.build_alert_engine(settings, data_dir)
        core = None
        if with_api:
            from gpufleet.api.context import open_api_core

            core = open_api_core(settings.api, data_dir)
        audit = core.audit if core is not None else None
        growth = None
        if fleet_mode:  # the cluster grows with the fleet; its layout is kept in the database
            from gpufleet.growth import FleetGrowth
            from gpufleet.state import open_state

            growth = FleetGrowth(open_state(wiring.state_database_url(settings, data_dir)), audit, clock)
        jobs = wiring.build_job_service(settings, source.devices(), data_dir, clock,
                                        capacity=source.capacity() if fleet_mode else None,
                                        audit=audit,  # every job state transition is audited
                                        cluster=growth.cluster(source.view) if growth is not None else None)
        if growth is not None:
            growth.attach(jobs)
            source.remember(growth.missing, growth.names)  # silent at start: listed, unknown, not placed on
        for uuid, state in jobs.gpu_overrides().items():  # operator overrides held across restarts
            view.set_override(uuid, state)
        stats = ModelStats()
        metrics = ServiceMetrics(settings.allocator, latest=latest, view=view, jobs=jobs, engine=engine,
                                 stats=stats, audit=audit)
        pending: deque[float] = deque(maxlen=720)  # GPUs asked for: the queue's, and Slurm / k8s pending work
        cluster = ClusterLink(settings.cluster, view=view, jobs=jobs, latest=latest, audit=audit, clock=clock)

        def reader_view() -> Any:
            return getattr(source, "view", None) if fleet_mode else None

        def names_seen() -> list[str]:
            rv = reader_view()
            return list(rv.names.values()) if rv is not None else []

        history = fleet_history_reader(settings.fleet, names_seen) if fleet_mode else store_history_reader(store_path)
        analytics = Analytics(settings, models_dir=data_dir / "models", store_path=store_path, history=history,
                              latest=latest, clock=clock, fleet=view, jobs=jobs, stats=stats,
                              device_samples=metrics.device_samples, after_scoring=cluster.remediate,
                              pending=pending, failure_model=failure_model,
                              external_demand=cluster.external_demand)
        store_sink = next((s for s in sinks if getattr(s, "name", "") == "store"), None)
        loop.add_sink(Cycle(view=view, jobs=jobs, metrics=metrics, engine=engine,
                            analytics_samples=analytics.cycle_samples, store_sink=store_sink,
                            fleet_reader=reader_view, grow=growth.observe if growth is not None else lambda v: None))

        def persist(_wall: float) -> None:
            jobs.persist()
            engine.save_state()

        scheduler = Scheduler()
        scheduler.add(analytics.tasks(), PeriodicTask("persist", 60.0, persist), cluster.tasks())
        if audit is not None:  # a signed checkpoint of the audit chain's head
            scheduler.add(PeriodicTask("audit_checkpoint", settings.api.audit_checkpoint_interval,
                                       audit.checkpoint_due))
        prom = PrometheusSink(loop, names=settings.exporter.names)

        def render() -> list[bytes]:
            return exposition(fleet_mode, prom, metrics, cluster)

        host, port = parse_listen(settings.serve.metrics_listen)
        metrics_server = MetricsServer(render, host, port, web=wiring.web_config(settings, None))
        api = None
        if core is not None:
            from gpufleet.api.context import build_context

            backend = FleetState(view=view, jobs=jobs, silences=wiring.SilenceAdapter(engine),
                                 alert_source=wiring.AlertAdapter(engine))
            ctx = build_context(settings.api, data_dir, fleet=backend, settings_view=masked(settings), core=core)
            api = wiring.build_api(settings, ctx, render, extra=cluster.routers())
    except BaseException:
        source.close()
        raise
    return Service(settings=settings, clock=clock, data_dir=data_dir, source=source, fleet_mode=fleet_mode,
                   fleet=view, loop=loop, prom=prom, sinks=sinks, store_path=store_path, engine=engine,
                   jobs=jobs, stats=stats, metrics=metrics, analytics=analytics, cluster=cluster,
                   scheduler=scheduler, metrics_server=metrics_server, audit=audit, api=api)
