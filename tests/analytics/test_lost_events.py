"""Lost events from a fleet store's `gpu_up` buckets: one linear pass, the same answer as GPU by GPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from gpufleet.analytics.fleet.history import lost_events


class _Frame:
    """A reader that returns one prepared ``up`` frame (what a Prometheus reader's ``read`` gives)."""

    name = "frame"

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df

    def read(self, fields: Any, since: Any, until: Any, step: Any = None, agg: str = "mean") -> pd.DataFrame:
        assert list(fields) == ["up"] and agg == "min"
        return self.df


def _reference(df: pd.DataFrame) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for uuid, g in df.groupby("uuid"):
        g = g.sort_values("ts")
        v, t = g["up"].to_numpy(), (g["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        fell = [t[i] for i in range(1, len(v)) if v[i] < 1 <= v[i - 1]]
        if fell:
            out[str(uuid)] = fell
    return out


def test_lost_events_match_a_per_gpu_reference_on_a_shuffled_frame() -> None:
    rng = np.random.default_rng(4)
    rows = []
    for g in range(40):
        up = (rng.random(60) > 0.08).astype(float)
        for k, v in enumerate(up):
            rows.append((f"GPU-{g:03d}", 1_700_000_000 + 300 * k, v))
    df = pd.DataFrame(rows, columns=["uuid", "ts", "up"]).sample(frac=1.0, random_state=1)  # any row order
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    got = lost_events(_Frame(df), 0, 1, 300.0)  # type: ignore[arg-type]
    want = _reference(df)
    assert want and set(got) == set(want)
    for u, times in want.items():
        np.testing.assert_array_equal(got[u], times)
    # a GPU down at the start of the window and never up is not a failure seen; nor is the boundary
    # between two GPUs (the last row of one up, the first of the next down)
    edge = pd.DataFrame({"uuid": ["A", "A", "B", "B"], "ts": pd.to_datetime([0, 300, 0, 300], unit="s", utc=True),
                         "up": [1.0, 1.0, 0.0, 0.0]})
    assert lost_events(_Frame(edge), 0, 1, 300.0) == {}  # type: ignore[arg-type]
