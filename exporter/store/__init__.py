"""The embedded history store (the default when no Prometheus / InfluxDB exists).

``HistoryStore(path)`` writes snapshots, events and labels and reads them back; see
``exporter/store/store.py`` and ``docs/storage.md``. Importing this package pulls in numpy and
pyarrow only (never pandas).
"""

from gpufleet.exporter.store.reader import ReadResult
from gpufleet.exporter.store.store import HistoryStore

__all__ = ["HistoryStore", "ReadResult"]
