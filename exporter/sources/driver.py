"""What the vendor-library sources (NVML, AMD SMI) share: start and stop the collectors around the
library, run every collector over every device that answers, mark lost devices down (one GPU_LOST event,
``up`` 0, none of their samples) and report each collector's duration, success and error.

A subclass opens its library (:meth:`_start_library` returns the query choke point), discovers its
devices, builds its collectors, probes lost devices for recovery and shuts its library down.
"""

from __future__ import annotations

import abc
import logging
import time
from typing import Any

from gpufleet.exporter.collectors.base import Emitter
from gpufleet.exporter.nvml_query import GpuLost
from gpufleet.exporter.schema import CollectorStat, Device, Event, EventKind, Snapshot
from gpufleet.exporter.sources.base import Source

log = logging.getLogger(__name__)


class DriverSource(Source):
    """Base of the sources that read GPUs through a vendor library with one query choke point."""

    node: str
    collector_names: list[str]
    vendor_label = "GPU"

    def __init__(self) -> None:
        self.query: Any = None
        self.collectors: list[Any] = []
        self._devices: list[Any] = []
        self._open = False

    # -- subclass hooks --------------------------------------------------------------------------
    @abc.abstractmethod
    def _start_library(self) -> Any:
        """Load and initialise the library; return the query choke point. Raises SourceUnavailable."""

    @abc.abstractmethod
    def _stop_library(self) -> None:
        """Shut the library down (errors logged, never raised)."""

    @abc.abstractmethod
    def _discover(self) -> list[Any]:
        """The devices (wrappers with ``.device``, ``.uuid``, ``.lost``)."""

    @abc.abstractmethod
    def _make(self, name: str) -> Any:
        """A collector by family name."""

    @abc.abstractmethod
    def _probe_lost(self, out: Emitter) -> None:
        """Try lost devices again; emit GPU_RECOVERED for those that answer."""

    def _skip(self, dev: Any, collector: Any) -> bool:
        return bool(dev.lost)

    def _family(self, dev: Any) -> list[Any]:
        """A device and everything that shares its fate (default: itself)."""
        return [dev]

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if self._open:
            return
        self.query = self._start_library()
        try:
            self._devices = self._discover()
            self.collectors = [self._make(name) for name in self.collector_names]
            for c in self.collectors:
                c.start(self.query, self._devices)
        except BaseException:
            self._shutdown()
            raise
        self._open = True

    def close(self) -> None:
        if not self._open:
            return
        self._shutdown()
        self._open = False

    def _shutdown(self) -> None:
        for c in self.collectors:
            try:
                c.stop()
            except Exception:
                log.exception("collector %s failed to stop", c.name)
        self.collectors = []
        if self.query is not None:
            self._stop_library()

    def devices(self) -> list[Device]:
        return [d.device for d in self._devices]

    # -- collection ------------------------------------------------------------------------------
    def _mark_lost(self, dev: Any, reason: str, out: Emitter) -> None:
        for d in self._family(dev):
            if not d.lost:
                d.lost = True
                log.error("%s %s is lost: %s", self.vendor_label, d.uuid, reason)
                out.event(Event(ts=out.now, kind=EventKind.GPU_LOST, uuid=d.uuid, node=self.node,
                                detail={"reason": reason}))

    def collect(self, now: float) -> Snapshot:
        if not self._open:
            self.open()
        q = self.query
        assert q is not None
        out = Emitter(now=now, node=self.node)
        self._probe_lost(out)
        q.take_errors()
        stats: list[CollectorStat] = []
        for c in self.collectors:
            t0 = time.perf_counter()
            errors: list[str] = []
            for dev in self._devices:
                if self._skip(dev, c):
                    continue
                try:
                    c.collect_device(dev, out)
                except GpuLost as exc:
                    self._mark_lost(dev, exc.reason, out)
                except Exception as exc:
                    log.exception("collector %s failed on %s", c.name, dev.uuid)
                    errors.append(f"{dev.uuid}: {exc!r}")
            try:
                c.collect_node([d for d in self._devices if not d.lost], out)
            except Exception as exc:
                log.exception("collector %s failed", c.name)
                errors.append(repr(exc))
            errors += q.take_errors()
            extra = c.error() if hasattr(c, "error") else None
            if extra:
                errors.append(extra)
            stats.append(CollectorStat(collector=c.name, duration_s=time.perf_counter() - t0,
                                       success=not errors, ts=now, error="; ".join(errors)[:1000] or None))
        lost = {d.uuid for d in self._devices if d.lost}
        samples = [s for s in out.samples if s.uuid not in lost] if lost else out.samples
        return Snapshot(ts=now, node=self.node, devices=self.devices(), samples=samples, events=out.events,
                        stats=stats, up={d.uuid: 0 if d.lost else 1 for d in self._devices})

    # -- introspection (the hardware check and `gpufleet devices`) -------------------------------
    def unsupported_fields(self) -> dict[tuple[str, str], str]:
        """(uuid, field) -> why it is absent, for every field the library refused so far."""
        return dict(self.query.unsupported) if self.query else {}
