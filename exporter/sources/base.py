"""The Source interface: what every device source (NVML, AMD SMI, the digital twin) provides.

A source owns its devices and its collectors. ``collect(now)`` runs one collection cycle and returns
a :class:`~exporter.schema.Snapshot` with samples (absent fields left out), events that happened since
the last call (XIDs read by a background thread, GPUs lost...), the up/down state of every device of
its inventory, and one :class:`~exporter.schema.CollectorStat` per collector.
"""

from __future__ import annotations

import abc
from types import TracebackType

from gpufleet.exporter.schema import Device, Snapshot


class Source(abc.ABC):
    """A device source. Use as a context manager, or call open() / close()."""

    name: str = "source"

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the library / start background threads. Raises SourceUnavailable."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything open() acquired. Safe to call twice."""

    @abc.abstractmethod
    def devices(self) -> list[Device]:
        """The devices this source knows (lost ones included)."""

    @abc.abstractmethod
    def collect(self, now: float) -> Snapshot:
        """Run one collection cycle at time ``now`` (unix seconds; simulated time for the twin)."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
