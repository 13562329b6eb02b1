"""The history-store sink: every snapshot goes to the embedded history store (:mod:`exporter.store`).

The store module (numpy, pyarrow) is imported only when this sink is created, so a Prometheus-only
exporter stays light.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.base import SelfMetric, Sink


class StoreSink(Sink):
    """Adapter: ``HistoryStore(path).write(snapshot)`` per cycle, ``close()`` at the end."""

    name = "store"

    def __init__(self, path: Path | str, size_every_s: float = 60.0, **store_options: Any) -> None:
        from gpufleet.exporter.store import HistoryStore

        self.store = HistoryStore(path, **store_options)
        self.written_samples = 0
        self._size = 0
        self._size_at = float("-inf")
        self._size_every = size_every_s
        self._closed = False

    def write(self, snapshot: Snapshot) -> None:
        self.store.write(snapshot)
        self.written_samples += len(snapshot.samples)

    def self_metrics(self) -> list[SelfMetric]:
        now = time.monotonic()
        if not self._closed and now - self._size_at >= self._size_every:  # walking the folder is not free
            self._size, self._size_at = self.store.size_bytes(), now
            self._quarantine = self.store.quarantine()
        q = getattr(self, "_quarantine", {"files": 0, "rows_lost": 0, "records_lost": 0})
        return [("store_bytes", (), float(self._size)),
                ("store_written_samples", (), float(self.written_samples)),
                ("store_quarantined_files", (), float(q["files"])),
                ("store_lost_records", (), float(q["rows_lost"] + q["records_lost"]))]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.store.close()
