"""MultiSource: several device sources of one node (NVIDIA and AMD) combined into one snapshot.

Devices, samples, events and up states are concatenated (uuids are vendor-unique); collector stats
of the same family (both vendors have ``clocks``, ``power``...) are merged into one: durations add
up, success only if every vendor's run succeeded, errors joined. So the exposition keeps one
``gpufleet_collector_*{collector}`` series per family.
"""

from __future__ import annotations

import logging

from gpufleet.exporter.schema import CollectorStat, Device, Snapshot
from gpufleet.exporter.sources.base import Source

log = logging.getLogger(__name__)


def merge_stats(stats: list[CollectorStat]) -> list[CollectorStat]:
    """One stat per collector name, in first-seen order."""
    merged: dict[str, CollectorStat] = {}
    for s in stats:
        m = merged.get(s.collector)
        if m is None:
            merged[s.collector] = s
            continue
        errors = "; ".join(e for e in (m.error, s.error) if e) or None
        merged[s.collector] = CollectorStat(collector=s.collector, duration_s=m.duration_s + s.duration_s,
                                            success=m.success and s.success, ts=max(m.ts, s.ts),
                                            error=errors[:1000] if errors else None)
    return list(merged.values())


class MultiSource(Source):
    """Runs every child source each cycle and combines their snapshots."""

    def __init__(self, sources: list[Source], node: str | None = None) -> None:
        if not sources:
            raise ValueError("MultiSource needs at least one source")
        self.sources = sources
        self.node: str = node or str(getattr(sources[0], "node", ""))
        self.name = "+".join(s.name for s in sources)

    def open(self) -> None:
        opened: list[Source] = []
        try:
            for s in self.sources:
                s.open()
                opened.append(s)
        except BaseException:
            for s in opened:
                s.close()
            raise

    def close(self) -> None:
        for s in self.sources:
            try:
                s.close()
            except Exception:
                log.exception("source %s failed to close", s.name)

    def devices(self) -> list[Device]:
        return [d for s in self.sources for d in s.devices()]

    def collect(self, now: float) -> Snapshot:
        snaps = [s.collect(now) for s in self.sources]
        out = Snapshot(ts=now, node=self.node)
        stats: list[CollectorStat] = []
        for snap in snaps:
            out.devices.extend(snap.devices)
            out.samples.extend(snap.samples)
            out.events.extend(snap.events)
            out.up.update(snap.up)
            stats.extend(snap.stats)
        out.stats = merge_stats(stats)
        return out
