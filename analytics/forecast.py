"""Demand series for forecasting: from a CSV, from Helios, or from the history store.

Demand = GPUs allocated plus GPUs requested by queued jobs.  Series are returned as a wide frame on a regular
grid (index: time, one column per series; NaN = missing).

Outages: a step where the whole cluster (the sum over every series in the input) reads exactly 0 is an
outage of the collector, not zero demand.  :func:`mask_outages` sets those steps to NaN in every series
*before* aggregation; an aggregated bucket with under ``min_valid`` of its raw steps observed is NaN.
Forecasters fill NaN steps for fitting with the median of the same time-of-day slot over the other days
(:func:`models.forecast_base.fill_missing`); backtests skip NaN steps when scoring and when computing the
MASE scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.exporter.errors import InputError

TOTAL = "total"


def load_csv(path: str | Path, time_col: str = "time", value_col: str = "value",
             series_col: str | None = None) -> pd.DataFrame:
    """Long CSV -> wide frame at the file's own resolution (one column per series; ``value`` if no series)."""
    p = str(path)
    try:
        df = pd.read_csv(p)
    except (OSError, UnicodeDecodeError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read CSV: {exc}", path=p) from exc
    for col in (time_col, value_col) + ((series_col,) if series_col else ()):
        if col not in df.columns:
            raise InputError(f"missing column {col!r} (have {', '.join(map(str, df.columns))})", path=p, line=1,
                             column=col)
    t = df[time_col]
    if pd.api.types.is_numeric_dtype(t):
        times = pd.to_datetime(t, unit="s", errors="coerce")
    else:
        times = pd.to_datetime(t, errors="coerce")
    vals = pd.to_numeric(df[value_col], errors="coerce")
    for name, bad in ((time_col, times.isna()), (value_col, vals.isna() & df[value_col].notna())):
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise InputError(f"bad value {df[name].iloc[i]!r}", path=p, line=i + 2, column=name)
    long = pd.DataFrame({"time": times, "value": vals,
                         "series": df[series_col].astype(str) if series_col else value_col})
    wide = long.pivot_table(index="time", columns="series", values="value", aggfunc="sum").sort_index()
    wide.columns.name = None
    return wide


def mask_outages(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """(frame with outage steps NaN in every column, boolean outage mask).  See the module docstring."""
    total = raw.sum(axis=1, min_count=1)
    out_mask = (total == 0) | total.isna()
    return raw.mask(out_mask, np.nan), out_mask


def aggregate(raw: pd.DataFrame, freq: str, agg: str = "mean", min_valid: float = 0.5) -> pd.DataFrame:
    """Resample to ``freq`` with ``agg`` (mean | max | sum); on a regular grid, buckets with under
    ``min_valid`` of their steps observed are NaN.  Irregular rows (events, e.g. one per request) summed
    per bucket: an empty bucket is 0."""
    if agg not in ("mean", "max", "sum"):
        raise InputError(f"--agg must be mean, max or sum, not {agg!r}")
    try:
        r = raw.resample(freq)
    except ValueError as exc:
        raise InputError(f"bad --freq {freq!r}: {exc}") from exc
    val = getattr(r, agg)()
    diffs = np.diff(pd.DatetimeIndex(raw.index).asi8) if len(raw) > 2 else np.array([0])
    regular = bool(len(diffs)) and float(np.mean(diffs == np.median(diffs))) > 0.9
    if agg == "sum" and not regular:
        # event rows (one per request): an empty bucket is zero demand, not a gap
        return raw.resample(freq).sum()
    if agg == "sum":
        val = r.sum(min_count=1)
    count = r.count()
    size = raw.notna().resample(freq).size() if len(raw) else count.iloc[:, 0]
    expected = max(1.0, float(np.median(size))) if len(size) else 1.0
    return val.where(count >= min_valid * expected)


def with_total(wide: pd.DataFrame) -> pd.DataFrame:
    """Add the ``total`` column (sum over series; NaN where any series is NaN)."""
    if wide.shape[1] <= 1 or TOTAL in wide.columns:
        return wide
    out = wide.copy()
    out[TOTAL] = wide.sum(axis=1, min_count=wide.shape[1])
    return out


def demand_from_csv(path: str | Path, time_col: str, value_col: str, series_col: str | None, freq: str,
                    agg: str = "mean") -> pd.DataFrame:
    """Demand frame from a CSV (outages masked, aggregated to ``freq``)."""
    raw, _ = mask_outages(load_csv(path, time_col, value_col, series_col))
    return aggregate(raw, freq, agg)


def demand_from_helios(folder: str | Path, freq: str = "1h", agg: str = "mean",
                       field: str = "running_gpu_num+pending_gpu_num", total: bool = True) -> pd.DataFrame:
    """Helios per-VC demand (+ ``total``) at ``freq``: outages masked at minute resolution, then aggregated."""
    from gpufleet.analytics.helios import field_frame, load_all

    raw, _ = mask_outages(field_frame(load_all(folder), field))
    if total:
        raw = with_total(raw)
    return aggregate(raw, freq, agg)


DEMAND_FIELDS = ("allocated_gpus", "queue_pending_gpus")


def demand_from_history(reader: Any, since: Any, until: Any, freq: str = "1h", agg: str = "mean",
                        fields: tuple[str, ...] = DEMAND_FIELDS) -> pd.DataFrame:
    """Demand from a history reader (``analytics.history.base.HistoryReader``): GPUs allocated (per
    ``gpu_type`` label when present) plus GPUs requested by queued jobs.  One column per GPU type and
    ``total``; queued GPUs carry no type, so they are added to ``total`` (and to the only type, if one)."""
    step = pd.Timedelta(freq).total_seconds()
    frame = reader.read(list(fields), since, until, step=step, agg=agg if agg != "sum" else "mean")
    if not isinstance(frame, pd.DataFrame) or frame.empty or "ts" not in frame.columns:
        raise InputError("the history holds no demand samples (allocated_gpus, queue_pending_gpus) in that window")
    cols = [c for c in frame.columns if c not in ("ts", "uuid")]
    by_ts = frame.groupby("ts")[cols].sum(min_count=1)
    by_ts.index = pd.DatetimeIndex(by_ts.index).tz_convert(None)
    alloc = [c for c in cols if c.split("{")[0] == fields[0]]
    pending = [c for c in cols if c.split("{")[0] != fields[0]]
    wide = pd.DataFrame(index=by_ts.index)
    for c in alloc:
        name = c.split("gpu_type=")[1].split(",")[0].rstrip("}") if "gpu_type=" in c else TOTAL
        wide[name] = wide.get(name, 0) + by_ts[c].fillna(0) if name in wide else by_ts[c]
    queued = by_ts[pending].sum(axis=1) if pending else pd.Series(0.0, index=by_ts.index)
    typed = [c for c in wide.columns if c != TOTAL]
    if len(typed) == 1:
        wide[typed[0]] = wide[typed[0]] + queued
    if typed:
        wide[TOTAL] = wide[typed].sum(axis=1, min_count=1) + (queued if len(typed) > 1 else 0)
    elif TOTAL in wide:
        wide[TOTAL] = wide[TOTAL] + queued
    else:
        wide[TOTAL] = queued
    wide = wide.asfreq(freq)
    raw, _ = mask_outages(wide[[TOTAL]])
    return wide.where(raw[TOTAL].notna(), np.nan, axis=0)
