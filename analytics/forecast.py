"""Demand series for forecasting: from a CSV, from Helios, or from the history store.

Demand = GPUs allocated plus GPUs requested by queued jobs.  Series are returned as a wide frame on a regular
grid (index: time, one column per series; NaN = missing).

Zeros are demand.  A step is missing only where the data has no row (no value), or where the user names the
value that marks an outage (``outage_value``, e.g. ``--outage-value 0``): then a step where the whole cluster
(the sum over every series in the input) reads exactly that value is an outage of the collector, and
:func:`mask_outages` sets it to NaN in every series *before* aggregation.  An aggregated bucket with under
``min_valid`` of its raw steps observed is NaN.
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


def mask_outages(raw: pd.DataFrame, outage_value: float | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """(frame with outage steps NaN in every column, boolean outage mask).  Without ``outage_value`` only
    steps with no value in any series are outages (zeros are demand); with it, also the steps where the whole
    cluster reads exactly ``outage_value``.  See the module docstring."""
    total = raw.sum(axis=1, min_count=1)
    out_mask = total.isna()
    if outage_value is not None:
        out_mask = out_mask | (raw == float(outage_value)).all(axis=1)
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
                    agg: str = "mean", outage_value: float | None = None) -> pd.DataFrame:
    """Demand frame from a CSV (outages masked when ``outage_value`` is given, aggregated to ``freq``)."""
    raw, _ = mask_outages(load_csv(path, time_col, value_col, series_col), outage_value)
    return aggregate(raw, freq, agg)


def demand_from_helios(folder: str | Path, freq: str = "1h", agg: str = "mean",
                       field: str = "running_gpu_num+pending_gpu_num", total: bool = True,
                       outage_value: float | None = None) -> pd.DataFrame:
    """Helios per-VC demand (+ ``total``) at ``freq``: outages (only where ``outage_value`` says) masked at
    minute resolution, then aggregated."""
    from gpufleet.analytics.helios import field_frame, load_all

    raw, _ = mask_outages(field_frame(load_all(folder), field), outage_value)
    if total:
        raw = with_total(raw)
    return aggregate(raw, freq, agg)


DEMAND_FIELDS = ("allocated_gpus", "queue_pending_gpus")


def demand_from_history(reader: Any, since: Any, until: Any, freq: str = "1h", agg: str = "mean",
                        fields: tuple[str, ...] = DEMAND_FIELDS, outage_value: float | None = None) -> pd.DataFrame:
    """Demand from a history reader (``analytics.history.base.HistoryReader``): GPUs allocated (per
    ``gpu_type`` label when present) plus GPUs requested by queued jobs (steps without samples are missing;
    with ``outage_value`` also the steps where the total reads it).  One column per GPU type and
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
    raw, _ = mask_outages(wide[[TOTAL]], outage_value)
    return wide.where(raw[TOTAL].notna(), np.nan, axis=0)


GENAI_FILE = "pod_gpu_duty_cycle_anon.tar.gz"


def demand_from_genai(folder: str | Path, freq: str = "1min", file: str = GENAI_FILE, total: bool = True,
                      min_coverage: float = 0.9, max_series: int | None = None) -> pd.DataFrame:
    """The Alibaba GenAI 2026 per-pod GPU series (default: duty cycle, as busy-GPU equivalents 0-1) on a
    ``freq`` grid: one column per pod (NaN where the pod has no sample) plus ``total`` (the sum over the pods
    that reported; NaN only where none did).  Timestamps are the trace's shifted Unix seconds, read as UTC
    times (only relative time is meaningful).  Pods with a sample in under ``min_coverage`` of the steps are
    left out of the per-pod columns (they still count in ``total``); ``max_series`` keeps the pods with the
    most samples."""
    import tarfile

    p = Path(folder) / file if Path(folder).is_dir() else Path(folder)
    try:
        with tarfile.open(p, "r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".csv")), None)
            if member is None:
                raise InputError("no CSV inside the archive", path=str(p))
            fh = tar.extractfile(member)
            if fh is None:
                raise InputError("cannot read the CSV inside the archive", path=str(p))
            df = pd.read_csv(fh)
    except (OSError, tarfile.TarError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read the GenAI archive: {exc}", path=str(p)) from exc
    for col in ("timestamp_anon", "container_ip", "value"):
        if col not in df.columns:
            raise InputError(f"missing column {col!r}", path=str(p), column=col)
    scale = 0.01 if "duty_cycle" in file else 1.0
    t = pd.to_datetime(pd.to_numeric(df["timestamp_anon"], errors="coerce"), unit="s").dt.round(freq)
    vals = pd.to_numeric(df["value"], errors="coerce") * scale
    long = pd.DataFrame({"time": t, "pod": df["container_ip"].astype(str).str[:8], "value": vals}).dropna()
    wide = long.pivot_table(index="time", columns="pod", values="value", aggfunc="mean").sort_index()
    wide.columns.name = None
    wide = wide.asfreq(freq)
    pods = wide
    wide = wide.loc[:, wide.notna().mean() >= min_coverage]
    if max_series is not None and wide.shape[1] > max_series:
        keep = wide.notna().sum().sort_values(ascending=False).index[:max_series]
        wide = wide[sorted(keep)]
    if total:
        wide = wide.copy()
        wide[TOTAL] = pods.sum(axis=1, min_count=1)
    return wide
