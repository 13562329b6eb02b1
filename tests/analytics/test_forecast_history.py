"""Demand from a history reader: allocated GPUs per type plus queued GPUs, outages missing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from gpufleet.analytics.forecast import demand_from_history
from gpufleet.analytics.history.base import HistoryReader, TimeLike, frame_from_series


class _Fleet(HistoryReader):
    """A reader over an in-memory fleet history in the documented frame format."""

    name = "memory"

    def __init__(self) -> None:
        ts = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
        ms = ts.as_unit("ms").asi8.astype(np.int64)
        a100 = np.full(48, 10.0)
        h100 = np.full(48, 4.0)
        queued = np.full(48, 2.0)
        for arr in (a100, h100, queued):
            arr[5] = 0.0  # the whole fleet reads 0 at 05:00: an outage
        self.frame = frame_from_series([("fleet", "allocated_gpus{gpu_type=A100}", ms, a100),
                                        ("fleet", "allocated_gpus{gpu_type=H100}", ms, h100),
                                        ("fleet", "queue_pending_gpus", ms, queued)])

    def read(self, fields: Sequence[str], since: TimeLike, until: TimeLike, step: float | None = None,
             uuids: Sequence[str] | None = None, agg: str = "mean") -> pd.DataFrame:
        cols = [c for c in self.frame.columns if c in ("ts", "uuid") or c.split("{")[0] in fields]
        f = self.frame[cols]
        return f[(f["ts"] >= pd.Timestamp(since)) & (f["ts"] < pd.Timestamp(until))].reset_index(drop=True)


def test_demand_per_type_plus_queue_with_outage() -> None:
    d = demand_from_history(_Fleet(), pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-03", tz="UTC"))
    assert set(d.columns) == {"A100", "H100", "total"}
    assert d["A100"].iloc[0] == 10 and d["H100"].iloc[0] == 4
    assert d["total"].iloc[0] == 16  # queued GPUs carry no type: they count in the total
    assert (d.iloc[5] == 0).all()  # zeros are demand unless the user says 0 marks an outage
    assert len(d) == 48
    flagged = demand_from_history(_Fleet(), pd.Timestamp("2024-01-01", tz="UTC"),
                                  pd.Timestamp("2024-01-03", tz="UTC"), outage_value=0)
    assert flagged.iloc[5].isna().all() and flagged.iloc[4].notna().all()
