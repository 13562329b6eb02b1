"""The history-reader interface: "these fields for these GPUs between t0 and t1 at step s" -> a frame.

Every reader (the embedded store, Prometheus, VictoriaMetrics / InfluxDB) returns the same frame:

* one row per (``ts``, ``uuid``), sorted by ``ts`` then ``uuid``, index a plain RangeIndex;
* ``ts``: ``datetime64[ns, UTC]``. Without a step it is the sample's own time; with a step it is
  the start ``t`` of the bucket ``[t, t + step)`` the row aggregates (buckets are aligned to
  multiples of the step since the epoch);
* ``uuid``: the GPU's uuid (pandas categorical);
* one ``float64`` column per series in base units: the catalogue field id (``temperature_gpu``) or,
  for a field with labels, ``field{label=value,...}`` (``nvlink_tx_bytes{link=3}``), labels sorted
  by name. A GPU that has no value for a series in a row has NaN there (absent, never 0).
  A requested field that no GPU reports has no column.

``agg`` (mean, min, max, last) says how a bucket's samples become one value; counters are read
as stored (use ``last`` and difference them to get increases).
"""

from __future__ import annotations

import abc
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.exporter.errors import ConfigError

AGGS = ("mean", "min", "max", "last")
TimeLike = float | int | dt.datetime | pd.Timestamp | str


def to_seconds(t: TimeLike | None) -> float | None:
    """Unix seconds from a number, a datetime (naive = UTC) or an ISO-8601 string."""
    if t is None:
        return None
    if isinstance(t, int | float):
        return float(t)
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


def series_column(field: str, labels: dict[str, str] | Sequence[tuple[str, str]]) -> str:
    """The frame column of a series: ``field`` or ``field{k=v,...}`` (labels sorted by name)."""
    items = sorted(labels.items() if isinstance(labels, dict) else labels)
    if not items:
        return field
    return field + "{" + ",".join(f"{k}={v}" for k, v in items) + "}"


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                         "uuid": pd.Categorical([])})


def frame_from_series(series: list[tuple[str, str, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Build the reader frame from ``(uuid, column, ts_ms int64, values float64)`` pieces."""
    series = [s for s in series if len(s[2])]
    if not series:
        return empty_frame()
    uuids = sorted({s[0] for s in series})
    cols = sorted({s[1] for s in series})
    ucode = {u: i for i, u in enumerate(uuids)}
    ccode = {c: i for i, c in enumerate(cols)}
    ts = np.concatenate([s[2] for s in series]).astype(np.int64)
    uc = np.concatenate([np.full(len(s[2]), ucode[s[0]], np.int64) for s in series])
    cc = np.concatenate([np.full(len(s[2]), ccode[s[1]], np.int64) for s in series])
    vals = np.concatenate([s[3] for s in series]).astype(np.float64)
    key = ts * len(uuids) + uc
    rows, inv = np.unique(key, return_inverse=True)
    mat = np.full((len(cols), len(rows)), np.nan)
    mat[cc, inv] = vals
    data: dict[str, Any] = {
        "ts": pd.to_datetime(rows // len(uuids), unit="ms", utc=True),
        "uuid": pd.Categorical.from_codes((rows % len(uuids)).astype(np.int32), categories=pd.Index(uuids)),
    }
    for c, j in ccode.items():
        data[c] = mat[j]
    return pd.DataFrame(data)


def check_args(fields: Sequence[str], since: TimeLike, until: TimeLike, step: float | None,
               agg: str) -> tuple[list[str], float, float]:
    if isinstance(fields, str):
        fields = [fields]
    if not fields:
        raise ConfigError("ask for at least one field")
    if agg not in AGGS:
        raise ConfigError(f"agg must be one of {AGGS}, got {agg!r}")
    lo, hi = to_seconds(since), to_seconds(until)
    assert lo is not None and hi is not None
    if not hi > lo:
        raise ConfigError(f"until ({until}) must be after since ({since})")
    if step is not None and not (step > 0 and math.isfinite(step)):
        raise ConfigError(f"step must be a positive number of seconds, got {step}")
    return list(fields), lo, hi


class HistoryReader(abc.ABC):
    """Reads telemetry history back as the frame described in this module's docstring."""

    name: str = "reader"

    @abc.abstractmethod
    def read(self, fields: Sequence[str], since: TimeLike, until: TimeLike, step: float | None = None,
             uuids: Sequence[str] | None = None, agg: str = "mean") -> pd.DataFrame:
        """``fields`` (catalogue ids) of ``uuids`` (None = all) in ``[since, until)``.

        Without ``step``: every stored sample. With ``step`` (seconds): one row per bucket
        ``[t, t + step)`` aggregated with ``agg``. Raises BackendUnavailable when the backend
        cannot be reached, ConfigError for bad arguments.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
