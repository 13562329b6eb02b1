"""History reader over the embedded store (:class:`exporter.store.HistoryStore`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from gpufleet.analytics.history.base import HistoryReader, TimeLike, check_args, empty_frame
from gpufleet.exporter.store import HistoryStore


class StoreReader(HistoryReader):
    """Reads a store folder (any process, while its writer writes). ``resolution`` as in ``HistoryStore.read``."""

    name = "store"

    def __init__(self, store: HistoryStore | str | Path, resolution: str = "auto") -> None:
        self.store = store if isinstance(store, HistoryStore) else HistoryStore(store, create=False)
        self.resolution = resolution

    def read(self, fields: Sequence[str], since: TimeLike, until: TimeLike, step: float | None = None,
             uuids: Sequence[str] | None = None, agg: str = "mean") -> pd.DataFrame:
        fields, lo, hi = check_args(fields, since, until, step, agg)
        r = self.store.read(fields, uuids=uuids, since=lo, until=hi, step=step, agg=agg,
                            resolution=self.resolution)
        if not len(r):
            return empty_frame()
        df = r.to_pandas()
        df["ts"] = df["ts"].astype("datetime64[ns, UTC]")
        return df
