"""The collection loop: collection is decoupled from scraping.

A background thread calls ``source.collect(now)`` every ``interval`` seconds (default 10 s, at least
1 s) and hands the snapshot to every sink. Scrapes never trigger collection: they read the latest
snapshot through :meth:`CollectionLoop.view`, which applies the staleness rule: data older than
``stale_intervals`` intervals (3) is never served as current. A device whose newest sample is older
than that has all its series dropped; a collector whose last run is older than that (the loop is
stuck, NVML hangs) reports success 0, so "no data" and "failed" stay distinguishable.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.schema import CollectorStat, Snapshot
from gpufleet.exporter.sinks.base import SelfMetric, Sink
from gpufleet.exporter.sources.base import Source

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0
DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class CollectorState:
    """What the self-metrics say about one collector at serving time."""

    collector: str
    duration_s: float
    success: bool
    last_success: float | None
    error: str | None = None


@dataclass(slots=True)
class View:
    """What a scrape serves: the latest snapshot and which of its devices are still current."""

    now: float
    snapshot: Snapshot | None
    stale: frozenset[str]
    collectors: list[CollectorState]
    age_s: float | None
    sink_metrics: list[SelfMetric] = field(default_factory=list)

    def fresh(self, uuid: str) -> bool:
        return uuid not in self.stale


def tune_process(switch_interval: float = 0.0005) -> None:
    """Runtime settings for a process whose main job is the exporter (``gpufleet exporter`` calls it).

    A collection cycle is CPU-bound Python; with the default 5 ms GIL switch interval a scrape that
    arrives meanwhile waits 5 ms at every hand-off, so the interval is shortened. Snapshots create many
    short-lived objects: objects alive at start-up are frozen out of the cyclic collector and its
    first-generation threshold raised, so fewer passes walk the large live heap.
    """
    sys.setswitchinterval(switch_interval)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class CollectionLoop:
    """Run a source on a timer in a background thread; keep the latest snapshot for scrapes.

    ``collectors`` (family names) keeps only the samples of those families. ``clock`` gives unix time
    (tests pass a fake one). The loop does not open or close the source; it closes its sinks on
    :meth:`stop`.
    """

    def __init__(self, source: Source, *, interval: float = DEFAULT_INTERVAL, sinks: Iterable[Sink] = (),
                 collectors: Iterable[str] | None = None, stale_intervals: float = 3.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not interval >= MIN_INTERVAL:
            raise ConfigError(f"collection interval must be at least {MIN_INTERVAL} s, got {interval}")
        self.source = source
        self.interval = float(interval)
        self.stale_after = stale_intervals * self.interval
        self.sinks: list[Sink] = list(sinks)
        self.clock = clock
        self.collectors = set(collectors) if collectors else None
        if self.collectors:
            known = {m.family for m in catalogue()}
            unknown = sorted(self.collectors - known)
            if unknown:
                raise ConfigError(f"unknown collector(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._collected_at = 0.0
        self._newest: dict[str, float] = {}
        self._stats: dict[str, CollectorStat] = {}
        self._last_success: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cycles = 0

    # -- collection -------------------------------------------------------------------------
    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def collect_once(self, now: float | None = None) -> Snapshot | None:
        """Run one collection cycle now; returns the snapshot (None when the source failed)."""
        now = self.clock() if now is None else now
        started = time.perf_counter()
        try:
            snap = self.source.collect(now)
        except Exception as exc:  # a broken source must not kill the loop; it shows as success 0
            log.warning("source %s failed to collect: %s", self.source.name, exc)
            duration = time.perf_counter() - started
            with self._lock:
                names = list(self._stats) or [self.source.name]
                for name in names:
                    self._stats[name] = CollectorStat(name, duration, False, now, error=str(exc))
            return None
        if self.collectors is not None:
            fam = {m.field: m.family for m in catalogue()}
            snap.samples = [s for s in snap.samples if fam.get(s.field) in self.collectors]
            # keep the stats of collectors that are not catalogue families (e.g. the twin's "twin")
            families = set(fam.values())
            snap.stats = [s for s in snap.stats if s.collector in self.collectors or s.collector not in families]
        # Freshness is kept on the loop's clock: a source may stamp data in its own time (the twin's
        # simulated time), so a sample's lag behind its snapshot is what counts.
        shift = now - snap.ts
        newest: dict[str, float] = {}
        get, never = newest.get, float("-inf")
        for s in snap.samples:
            ts = s.ts
            if ts > get(s.uuid, never):
                newest[s.uuid] = ts
        newest = {u: ts + shift for u, ts in newest.items()}
        for uuid in snap.up:
            newest.setdefault(uuid, now)
        with self._lock:
            self._snapshot = snap
            self._collected_at = now
            self._newest = newest
            for st in snap.stats:
                st_wall = CollectorStat(st.collector, st.duration_s, st.success, st.ts + shift, st.error)
                self._stats[st.collector] = st_wall
                if st.success:
                    self._last_success[st.collector] = st_wall.ts
            self.cycles += 1
        for sink in list(self.sinks):
            try:
                sink.write(snap)
            except Exception as exc:
                log.warning("sink %s failed: %s", sink.name, exc)
        return snap

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.collect_once()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow cycle: skip the missed ticks instead of bursting
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def start(self) -> CollectionLoop:
        """Start the background thread (the first cycle runs at once)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gpufleet-collect", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close the sinks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing sink %s failed: %s", sink.name, exc)

    def wait_cycles(self, n: int, timeout: float = 30.0) -> None:
        """Block until ``n`` cycles have completed (for tests and the CLI)."""
        deadline = time.monotonic() + timeout
        while self.cycles < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"collection loop did not complete {n} cycles in {timeout} s")
            time.sleep(0.02)

    # -- serving ----------------------------------------------------------------------------
    def latest(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot

    def view(self, now: float | None = None) -> View:
        """The latest snapshot with the staleness rule applied at time ``now``."""
        now = self.clock() if now is None else now
        cutoff = now - self.stale_after
        with self._lock:
            snap = self._snapshot
            collected = self._collected_at
            stale = frozenset(u for u, ts in self._newest.items() if ts < cutoff)
            states = [
                CollectorState(name, st.duration_s, st.success and st.ts >= cutoff,
                               self._last_success.get(name), st.error)
                for name, st in sorted(self._stats.items())
            ]
        sink_metrics: list[SelfMetric] = []
        for sink in self.sinks:
            try:
                sink_metrics.extend(sink.self_metrics())
            except Exception as exc:
                log.debug("sink %s self-metrics failed: %s", sink.name, exc)
        return View(now=now, snapshot=snap, stale=stale, collectors=states,
                    age_s=(now - collected) if snap is not None else None, sink_metrics=sink_metrics)
