"""Failure-prediction datasets: per-GPU telemetry windows, "fails within H" labels, time splits.

- :class:`Panel`: a dense GPUs x steps x fields grid at a fixed step (NaN = no sample: unsupported or
  missing). Built from snapshots (:func:`panel_from_snapshots`, e.g. the twin) or from a long
  ``ts, uuid, field, value`` frame (:func:`panel_from_frame`, what the history readers return).
- :func:`prepare`: counters become per-step increments (resets clipped to 0); fields no GPU reports are
  kept as all-masked columns so a model trained on a richer fleet still loads.
- :class:`WindowSet`: windows (default 6 h) ending every ``stride`` seconds on every GPU, gathered
  lazily (``ws.X[rows]`` / ``ws.mask[rows]``) so 1,000 GPUs x 30 days never sit in memory as windows;
  ``y[i, j]`` = 1 if the GPU fails in (end, end + horizons[j]]. Windows containing a failure, or with
  less than ``min_observed`` of their steps observed (GPU lost / being repaired), are dropped.
- :func:`time_split`: training windows end, *with their label horizon*, before the split; test windows
  start at or after it, so no window or label straddles it. Rows come in time order (the models
  calibrate on the last slice of the training rows).
- :func:`normalization_stats`: per-field mean / std over the observed training values only.

Class imbalance is handled explicitly: :func:`class_balance` reports it, :func:`subsample_negatives`
is available, and the models weight positives (balanced class weights / positive weights) and then
recalibrate on a later time slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.schema import Event, EventKind, Snapshot

HOUR = 3600.0
DAY = 86400.0
HORIZONS = (HOUR, DAY, 7 * DAY)

FAILURE_FIELDS = (
    "temperature_gpu", "temperature_memory", "power_usage", "util_gpu", "clock_sm",
    "ecc_corrected_volatile", "ecc_uncorrected_volatile", "remapped_rows_correctable",
    "remapped_rows_uncorrectable", "row_remap_pending", "row_remap_failure", "retired_pages_pending",
    "retired_pages_dbe", "pcie_replay", "pcie_link_width", "throttle_thermal_seconds", "xid_errors",
    "nvlink_crc_flit_errors",
)
"""Fields the failure predictors read (labelled series such as ``xid_errors{xid}`` are summed)."""


def is_counter(field_id: str) -> bool:
    cat = catalogue()
    return field_id in cat and cat.field(field_id).is_counter


@dataclass
class Panel:
    """``values[g, t, f]``: field f of GPU g at ``times[t]``; NaN where there is no sample."""

    uuids: list[str]
    times: np.ndarray
    fields: tuple[str, ...]
    values: np.ndarray
    nodes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    @property
    def step(self) -> float:
        return float(self.times[1] - self.times[0]) if len(self.times) > 1 else 60.0

    def index(self, uuid: str) -> int:
        return self.uuids.index(uuid)


def _grid(start: float, end: float, step: float) -> np.ndarray:
    return start + step * np.arange(int(np.ceil((end - start) / step - 1e-9)))


def panel_from_snapshots(snapshots: Iterable[Snapshot], start: float, end: float, step: float = 60.0,
                         fields: Sequence[str] = FAILURE_FIELDS) -> Panel:
    """Grid snapshots onto [start, end) at ``step`` (a sample lands in the step it falls in)."""
    times = _grid(start, end, step)
    fidx = {f: i for i, f in enumerate(fields)}
    uidx: dict[str, int] = {}
    nodes: list[str] = []
    models: list[str] = []
    blocks: list[np.ndarray] = []
    for snap in snapshots:
        for d in snap.devices:
            if d.uuid not in uidx:
                uidx[d.uuid] = len(uidx)
                nodes.append(d.node)
                models.append(d.model)
                blocks.append(np.full((len(times), len(fields)), np.nan, dtype=np.float32))
        k = int((snap.ts - start) // step)
        if not 0 <= k < len(times):
            continue
        for s in snap.samples:
            j = fidx.get(s.field)
            if j is None:
                continue
            row = blocks[uidx[s.uuid]]
            if s.labels and not np.isnan(row[k, j]):
                row[k, j] += s.value  # labelled series (per xid, per link) are summed
            else:
                row[k, j] = s.value
    values = np.stack(blocks) if blocks else np.zeros((0, len(times), len(fields)), np.float32)
    return Panel(list(uidx), times, tuple(fields), values, nodes, models)


def panel_from_frame(frame: Any, start: float, end: float, step: float = 60.0,
                     fields: Sequence[str] = FAILURE_FIELDS) -> Panel:
    """Grid a long frame with columns ``ts, uuid, field, value`` (labelled series summed per step)."""
    import pandas as pd

    df = frame[frame["field"].isin(list(fields))]
    times = _grid(start, end, step)
    uuids = sorted(df["uuid"].unique().tolist())
    values = np.full((len(uuids), len(times), len(fields)), np.nan, dtype=np.float32)
    if len(df):
        k = ((df["ts"].to_numpy(dtype=np.float64) - start) // step).astype(np.int64)
        ok = (k >= 0) & (k < len(times))
        g = pd.Categorical(df["uuid"], categories=uuids).codes
        f = pd.Categorical(df["field"], categories=list(fields)).codes
        agg = pd.DataFrame({"g": g[ok], "k": k[ok], "f": f[ok], "v": df["value"].to_numpy()[ok]}) \
            .groupby(["g", "k", "f"], sort=False)["v"].sum()
        gi, ki, fi = (np.asarray(agg.index.get_level_values(n)) for n in ("g", "k", "f"))
        values[gi, ki, fi] = agg.to_numpy(dtype=np.float32)
    return Panel(uuids, times, tuple(fields), values)


def prepare(panel: Panel) -> Panel:
    """Counters -> per-step increments (NaN when either end is missing; resets become 0)."""
    v = panel.values.copy()
    for j, f in enumerate(panel.fields):
        if is_counter(f):
            d = np.diff(v[:, :, j], axis=1, prepend=np.nan)
            v[:, :, j] = np.where(d < 0, 0.0, d)
    return Panel(panel.uuids, panel.times, panel.fields, v, panel.nodes, panel.models)


def coarsen(panel: Panel, step: float) -> Panel:
    """A prepared panel on a coarser grid: counter increments summed, gauges averaged per block.

    ``step`` must be a whole multiple of the panel's step (it is rounded to one). A block with no
    sample of a field stays NaN (masked), so missingness survives. Long windows (48-72 h) at 15-30
    minute steps see multi-day precursors at a fraction of the cost of 1-minute steps.
    """
    k = max(round(step / panel.step), 1)
    if k == 1 or len(panel.times) == 0:
        return panel
    G, T, F = panel.values.shape
    lead = T % k  # drop the oldest partial block so the last block ends at the panel's last step
    v = panel.values[:, lead:].reshape(G, (T - lead) // k, k, F)
    obs = ~np.isnan(v)
    cnt = obs.sum(axis=2)
    tot = np.where(obs, v, 0.0).sum(axis=2, dtype=np.float64)
    counter = np.array([is_counter(f) for f in panel.fields])
    out = np.where(counter, tot, tot / np.maximum(cnt, 1))
    out = np.where(cnt > 0, out, np.nan).astype(np.float32)
    # a block is stamped with its last fine step, so labels (counted from a window's end) never see
    # data from after that time
    times = panel.times[lead:][k - 1::k]
    return Panel(panel.uuids, times, panel.fields, out, panel.nodes, panel.models)


def failures_by_uuid(labels: Iterable[Event]) -> dict[str, np.ndarray]:
    """Failure times per GPU from ground-truth labels (``EventKind.FAILURE``)."""
    out: dict[str, list[float]] = {}
    for e in labels:
        if e.kind == EventKind.FAILURE:
            out.setdefault(e.uuid, []).append(float(e.ts))
    return {k: np.sort(np.array(v)) for k, v in out.items()}


class _Gather:
    """Lazy ``(n, steps, fields)`` view: ``view[rows]`` gathers windows from the panel arrays."""

    def __init__(self, data: np.ndarray, gpu: np.ndarray, end: np.ndarray, steps: int) -> None:
        self.data, self.gpu, self.end, self.steps = data, gpu, end, steps
        self.shape = (len(gpu), steps, data.shape[2])
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        rows = np.arange(self.shape[0])[rows] if not isinstance(rows, np.ndarray) else rows
        t = self.end[rows, None] - self.steps + 1 + np.arange(self.steps)[None, :]
        return self.data[self.gpu[rows, None], t]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(self.shape[0])]
        return out.astype(dtype) if dtype is not None else out


@dataclass
class WindowSet:
    """Windows over a prepared panel: row i = GPU ``gpu[i]``, steps ending at index ``end[i]``."""

    panel: Panel
    gpu: np.ndarray
    end: np.ndarray
    y: np.ndarray
    horizons: tuple[float, ...]
    steps: int
    fail_ts: np.ndarray  # the next failure after the window's end (inf if none)
    _values: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    _mask: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0, 0), np.uint8))

    @property
    def X(self) -> _Gather:
        return _Gather(self._values, self.gpu, self.end, self.steps)

    @property
    def mask(self) -> _Gather:
        return _Gather(self._mask, self.gpu, self.end, self.steps)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.panel.fields

    @property
    def t_end(self) -> np.ndarray:
        return self.panel.times[self.end]

    @property
    def t_start(self) -> np.ndarray:
        return self.panel.times[self.end - self.steps + 1]

    @property
    def uuids(self) -> list[str]:
        return [self.panel.uuids[g] for g in self.gpu]

    def __len__(self) -> int:
        return len(self.gpu)

    def subset(self, rows: np.ndarray) -> WindowSet:
        return WindowSet(self.panel, self.gpu[rows], self.end[rows], self.y[rows], self.horizons, self.steps,
                         self.fail_ts[rows], self._values, self._mask)

    def gpu_days(self, stride: float) -> float:
        """Exposure the rows stand for when windows end every ``stride`` seconds."""
        return len(self) * stride / DAY


def make_windows(panel: Panel, failures: dict[str, np.ndarray], *, window: float = 6 * HOUR,
                 stride: float = HOUR, horizons: Sequence[float] = HORIZONS, min_observed: float = 0.5,
                 last_only: bool = False, recent: float | None = None) -> WindowSet:
    """Windows of ``window`` seconds ending every ``stride`` seconds on every GPU of a prepared panel.

    ``last_only`` builds one window per GPU ending at the panel's last step (online scoring).
    ``recent`` (default: the whole window) is the span before a window's end that must hold no failure
    and be observed ``min_observed`` of the time; with long windows (e.g. 72 h) pass ``recent=6 h`` so
    a GPU repaired two days ago is still scored (and evaluated on the same rows as 6 h windows).
    """
    step = panel.step
    steps = max(round(window / step), 1)
    rsteps = steps if recent is None else min(max(round(recent / step), 1), steps)
    every = max(round(stride / step), 1)
    T = len(panel.times)
    obs = ~np.isnan(panel.values)
    values = np.where(obs, panel.values, 0.0).astype(np.float32)
    mask = obs.astype(np.uint8)
    any_obs = obs.any(axis=2)
    cum = np.concatenate([np.zeros((len(panel.uuids), 1)), np.cumsum(any_obs, axis=1)], axis=1)
    ends = np.array([T - 1]) if last_only else np.arange(steps - 1, T, every)
    ends = ends[ends >= steps - 1] if not last_only else np.array([max(T - 1, 0)])
    gpus, es, ys, nexts = [], [], [], []
    hs = np.asarray(horizons, dtype=np.float64)
    for g, u in enumerate(panel.uuids):
        fts = failures.get(u, np.zeros(0))
        for e in ends:
            s = max(e - rsteps + 1, 0)
            if not last_only and (cum[g, e + 1] - cum[g, s]) < min_observed * rsteps:
                continue
            t_s, t_e = panel.times[s], panel.times[e]
            k = np.searchsorted(fts, t_s, side="left")
            if not last_only and k < len(fts) and fts[k] <= t_e:
                continue  # the failure happened inside the window: not a prediction
            nxt = fts[np.searchsorted(fts, t_e, side="right")] if np.searchsorted(fts, t_e, side="right") < len(fts) \
                else np.inf
            gpus.append(g)
            es.append(e)
            nexts.append(nxt)
            ys.append((nxt - t_e) <= hs)
    order = np.lexsort((np.array(gpus), np.array(es))) if es else np.zeros(0, np.int64)
    gpu = np.array(gpus, dtype=np.int64)[order]
    end = np.array(es, dtype=np.int64)[order]
    y = np.array(ys, dtype=np.int64).reshape(-1, len(hs))[order]
    fail = np.array(nexts, dtype=np.float64)[order]
    if steps > T:  # pad the front so short panels still give (partly masked) windows
        pad = steps - T
        values = np.concatenate([np.zeros((values.shape[0], pad, values.shape[2]), np.float32), values], axis=1)
        mask = np.concatenate([np.zeros((mask.shape[0], pad, mask.shape[2]), np.uint8), mask], axis=1)
        times = np.concatenate([panel.times[0] - step * np.arange(pad, 0, -1), panel.times])
        panel = Panel(panel.uuids, times, panel.fields, values, panel.nodes, panel.models)
        end = end + pad
    return WindowSet(panel, gpu, end, y, tuple(float(h) for h in hs), steps, fail, values, mask)


def time_split(ws: WindowSet, split_ts: float) -> tuple[WindowSet, WindowSet]:
    """(train, test): train windows end with their longest horizon by ``split_ts``; test ones start after."""
    hmax = max(ws.horizons)
    train = np.flatnonzero(ws.t_end + hmax <= split_ts)
    test = np.flatnonzero(ws.t_start >= split_ts)
    return ws.subset(train), ws.subset(test)


def normalization_stats(ws: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-field mean / std over the observed values in the windows' time span (training data only)."""
    if len(ws) == 0:
        f = len(ws.feature_names)
        return np.zeros(f), np.ones(f)
    lo = int((ws.end - ws.steps + 1).min())
    hi = int(ws.end.max()) + 1
    gs = np.unique(ws.gpu)
    v = ws._values[gs, lo:hi]
    m = ws._mask[gs, lo:hi] > 0
    cnt = np.maximum(m.sum(axis=(0, 1)), 1)
    mean = np.where(m, v, 0).sum(axis=(0, 1)) / cnt
    var = np.where(m, (v - mean) ** 2, 0).sum(axis=(0, 1)) / cnt
    return mean, np.where(var > 0, np.sqrt(var), 1.0)


def class_balance(ws: WindowSet) -> dict[str, float]:
    """Share of positive windows per horizon."""
    from gpufleet.models.failure_base import horizon_label

    return {horizon_label(h): float(ws.y[:, j].mean()) if len(ws) else 0.0 for j, h in enumerate(ws.horizons)}


def subsample_negatives(ws: WindowSet, ratio: float, seed: int) -> WindowSet:
    """Keep every window positive at any horizon and at most ``ratio`` negatives per positive (time order kept)."""
    rng = np.random.default_rng(seed)
    pos = ws.y.any(axis=1)
    neg = np.flatnonzero(~pos)
    keep_n = min(len(neg), int(ratio * max(pos.sum(), 1)))
    rows = np.sort(np.concatenate([np.flatnonzero(pos), rng.choice(neg, keep_n, replace=False)]))
    return ws.subset(rows)


def panel_from_reader(reader: Any, since: float, until: float, step: float = 60.0,
                      fields: Sequence[str] = FAILURE_FIELDS, uuids: Sequence[str] | None = None) -> Panel:
    """Read ``fields`` through any history reader (``analytics.history``) onto a grid; counters by ``last``.

    Labelled series (``xid_errors{xid=13}``) are summed into their field; fields nobody reports stay NaN.
    """
    counters = [f for f in fields if is_counter(f)]
    gauges = [f for f in fields if f not in counters]
    times = _grid(since, until, step)
    uu: dict[str, int] = {}
    parts = []
    for group, agg in ((gauges, "mean"), (counters, "last")):
        if not group:
            continue
        df = reader.read(group, since, until, step=step, uuids=uuids, agg=agg)
        if len(df):
            parts.append(df)
            for u in df["uuid"].astype(str).unique():
                uu.setdefault(u, len(uu))
    values = np.full((len(uu), len(times), len(fields)), np.nan, dtype=np.float32)
    fidx = {f: i for i, f in enumerate(fields)}
    for df in parts:
        ts = df["ts"].dt.as_unit("ns").astype("int64").to_numpy() / 1e9
        k = ((ts - since) // step).astype(np.int64)
        if str(df["uuid"].dtype) == "category":  # a fleet read: one lookup per GPU, not per row
            lut = np.array([uu.get(str(c), -1) for c in df["uuid"].cat.categories], dtype=np.int64)
            g = lut[df["uuid"].cat.codes.to_numpy()]
        else:
            g = np.array([uu[str(u)] for u in df["uuid"].astype(str)], dtype=np.int64)
        ok = (k >= 0) & (k < len(times))
        for col in df.columns:
            if col in ("ts", "uuid"):
                continue
            j = fidx.get(col.split("{", 1)[0])
            if j is None:
                continue
            v = df[col].to_numpy(dtype=np.float64)
            sel = ok & ~np.isnan(v)
            cur = values[g[sel], k[sel], j]
            values[g[sel], k[sel], j] = np.where(np.isnan(cur), v[sel], cur + v[sel])
    return Panel(list(uu), times, tuple(fields), values)
