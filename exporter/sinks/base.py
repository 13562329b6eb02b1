"""The Sink interface: something that receives every snapshot the collection loop builds.

A sink renders or ships a :class:`~exporter.schema.Snapshot` (Prometheus exposition, InfluxDB line
protocol, the embedded history store). ``write`` is called from the collection thread once per cycle
and must not block for long: sinks that talk to a server hand the work to their own thread.
"""

from __future__ import annotations

import abc

from gpufleet.exporter.schema import Labels, Snapshot

SelfMetric = tuple[str, Labels, float]
"""A sink's own metric: (catalogue field id, labels, value), e.g. ("influx_written_points", (), 42.0)."""


class Sink(abc.ABC):
    """Receives snapshots. Use ``close()`` (or the context manager) to flush and release resources."""

    name: str = "sink"

    @abc.abstractmethod
    def write(self, snapshot: Snapshot) -> None:
        """Take one snapshot. Called from the collection thread."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush what can be flushed and release resources. Safe to call twice."""

    def self_metrics(self) -> list[SelfMetric]:
        """The sink's own catalogue metrics (buffered points, write errors...)."""
        return []

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
