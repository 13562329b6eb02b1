"""The fleet reader as a device source, so `gpufleet serve --fleet-url` runs the same collection loop,
API view, allocator and alert engine over the whole fleet that it runs over one node's GPUs."""

from __future__ import annotations

import time

from gpufleet.analytics.fleet.model import FleetView
from gpufleet.analytics.fleet.reader import FleetReader
from gpufleet.exporter.schema import CollectorStat, Device, Snapshot
from gpufleet.exporter.sources.base import Source


class FleetSource(Source):
    """Each ``collect`` is one fleet cycle; the snapshot lists every GPU seen so far (``unknown`` ones
    without values) and :attr:`view` keeps the cycle's full view (node states, health, query count)."""

    name = "fleet"

    def __init__(self, reader: FleetReader) -> None:
        self.reader = reader
        self.view: FleetView | None = None

    def open(self) -> None:
        """Read the fleet once, so the inventory is known before the allocator is built. Raises
        BackendUnavailable when the store cannot be reached."""
        if self.view is None:
            self.view = self.reader.read()

    def close(self) -> None:
        self.reader.close()

    def remember(self, devices: list[Device], names: dict[str, str] | None = None) -> None:
        """GPUs known from before (the stored cluster layout): see :meth:`FleetReader.remember`."""
        self.reader.remember(devices, names)

    def devices(self) -> list[Device]:
        return self.view.gpus() if self.view is not None else []

    def capacity(self) -> dict[str, tuple[float | None, float | None]]:
        """node -> (CPUs, memory bytes) as the fleet reports them (None where it does not)."""
        if self.view is None:
            return {}
        return {n: (v.cpus, v.memory_bytes) for n, v in self.view.nodes.items()}

    def collect(self, now: float) -> Snapshot:
        t0 = time.perf_counter()
        self.view = view = self.reader.read(now)
        snap = view.snapshot()
        snap.stats.append(CollectorStat("fleet", time.perf_counter() - t0, True, view.ts))
        return snap
