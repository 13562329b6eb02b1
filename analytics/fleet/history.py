"""History for training, scoring and forecasting through one reader interface, from the embedded store
or from the fleet's Prometheus / VictoriaMetrics, read in time chunks.

:func:`open_history` turns a folder (the embedded store) or a URL (Prometheus, or VictoriaMetrics
scraping the exporters; ``kind="auto"`` asks the server) into a :class:`~analytics.history.base.HistoryReader`.
:func:`read_history` reads the failure model's fields for every GPU into one panel, ``chunk_s`` of time
per request, so that no answer grows with the whole span. Failure labels: from the store's labels, and
from a fleet store the moments a GPU was seen lost (``gpu_up`` going to 0 after being 1).
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from gpufleet.analytics.datasets import FAILURE_FIELDS, Panel, _grid, panel_from_reader, prepare
from gpufleet.analytics.fleet.reader import KINDS
from gpufleet.analytics.history.base import (
    HistoryReader,
    TimeLike,
    check_args,
    frame_from_series,
    series_column,
)
from gpufleet.analytics.history.prometheus import PrometheusReader
from gpufleet.exporter.errors import BackendUnavailable, ConfigError


class ScrapedVictoriaReader(PrometheusReader):
    """VictoriaMetrics that scrapes the exporters (so its series carry the exporters' own names).

    Reads raw samples through ``/api/v1/export`` (one streamed request per field, fields in parallel)
    and buckets them here, which is several times faster than decoding ``query_range`` answers for a
    fleet's worth of series; the buckets are the reader contract's ``[t, t + step)``, as the Prometheus
    reader's are. :meth:`panel_grid` writes straight into a training panel, with no frame in between."""

    name = "victoria"
    backend = "VictoriaMetrics"

    def __init__(self, url: str, *, workers: int = 4, **kwargs: Any) -> None:
        kwargs.setdefault("max_points", 30_000)
        super().__init__(url, **kwargs)
        self.workers = workers

    def left_open_ranges(self) -> bool:
        return True

    # ------------------------------------------------------------------ export
    def _export(self, field: str, lo_ms: int, hi_ms: int, step_ms: int | None, agg: str,
                uuids: Sequence[str] | None) -> Block:
        """Every series of ``field`` in ``[lo_ms, hi_ms)`` from ``/api/v1/export``, in base units."""
        m = self.metric(field)
        name = self.series_name(m)
        if name is None:
            return Block([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), lo_ms, step_ms)
        params = {"match[]": self.selector_expr(name, uuids), "start": f"{lo_ms / 1000:.3f}",
                  "end": f"{(hi_ms - 1) / 1000:.3f}"}
        try:  # uncompressed: on loopback / in-cluster, gzip costs both sides more CPU than it saves
            r = self.client.get(f"{self.url}/api/v1/export", params=params, headers={"Accept-Encoding": "identity"})
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"{self.backend} at {self.url} is unreachable: {exc}") from None
        if r.status_code >= 400:
            err = BackendUnavailable if r.status_code >= 500 or r.status_code == 429 else ConfigError
            raise err(f"{self.backend} at {self.url} answered the export of {name} with HTTP {r.status_code}: "
                      f"{r.text[:300]}")
        labels = (self.uuid_label(), *m.labels)
        metrics, lengths, ts, vals = _parse_export(r.content, labels)
        del r
        keys: dict[tuple[str, str], int] = {}
        sk = np.empty(len(metrics), np.int64)
        for i, met in enumerate(metrics):  # one key per (GPU, labels): a series split over lines merges
            uuid = met.get(labels[0])
            col = series_column(field, {k: met[k] for k in m.labels if met.get(k)})
            sk[i] = keys.setdefault((uuid or "", col), len(keys)) if uuid else -1
        key = np.repeat(sk, lengths)
        ok = (key >= 0) & (ts >= lo_ms) & (ts < hi_ms) & ~np.isnan(vals)
        return Block(list(keys), key[ok], ts[ok], vals[ok] / self.scale(m), lo_ms, step_ms, agg)

    def _fields(self, fields: Sequence[str], lo_ms: int, hi_ms: int, step_ms: int | None,
                aggs: dict[str, str], uuids: Sequence[str] | None) -> list[Block]:
        if len(fields) <= 1 or self.workers <= 1:
            return [self._export(f, lo_ms, hi_ms, step_ms, aggs[f], uuids) for f in fields]
        with cf.ThreadPoolExecutor(max_workers=min(self.workers, len(fields))) as pool:
            return list(pool.map(lambda f: self._export(f, lo_ms, hi_ms, step_ms, aggs[f], uuids), fields))

    def read(self, fields: Sequence[str], since: TimeLike, until: TimeLike, step: float | None = None,
             uuids: Sequence[str] | None = None, agg: str = "mean") -> pd.DataFrame:
        fields, lo, hi = check_args(fields, since, until, step, agg)
        step_ms = None if step is None else round(step * 1000)
        lo_ms, hi_ms = round(lo * 1000), round(hi * 1000)
        blocks = self._fields(fields, lo_ms, hi_ms, step_ms, dict.fromkeys(fields, agg), uuids)
        return frame_from_series([p for b in blocks for p in b.pieces(hi_ms)])

    def panel_grid(self, since: float, until: float, step: float, fields: Sequence[str]) -> Panel:
        """What :func:`analytics.datasets.panel_from_reader` gives (gauges by mean, counters by last,
        labelled series summed into their field), built straight from the export."""
        from gpufleet.analytics.datasets import is_counter

        times = _grid(since, until, step)
        step_ms = round(step * 1000)
        t0_ms = round(float(times[0]) * 1000) if len(times) else round(since * 1000)
        aggs = {f: "last" if is_counter(f) else "mean" for f in fields}
        blocks = self._fields(list(fields), t0_ms, round(until * 1000), step_ms, aggs, None)
        uu: dict[str, int] = {}
        for blk in blocks:
            for uuid, _col in blk.keys:
                uu.setdefault(uuid, len(uu))
        values = np.full((len(uu), len(times), len(fields)), np.nan, dtype=np.float32)
        for j, blk in enumerate(blocks):
            if not blk.keys:
                continue
            grid, seen = blk.grid(len(times))  # (keys, buckets): one series per row
            g = np.array([uu[u] for u, _ in blk.keys], dtype=np.int64)
            n = len(times)
            cells = (g[:, None] * n + np.arange(n)).ravel()  # labelled series summed into their field
            total = np.bincount(cells, np.where(seen, grid, 0.0).ravel(), minlength=len(uu) * n)
            count = np.bincount(cells, seen.ravel().astype(np.float64), minlength=len(uu) * n)
            values[:, :, j] = np.where(count > 0, total, np.nan).reshape(len(uu), n)
        return Panel(list(uu), times, tuple(fields), values)


class Block:
    """The samples of one field's series from one export: ``key`` indexes ``keys`` (uuid, column)."""

    def __init__(self, keys: list[tuple[str, str]], key: np.ndarray, ts: np.ndarray, vals: np.ndarray,
                 lo_ms: int, step_ms: int | None, agg: str = "mean") -> None:
        self.keys, self.key, self.ts, self.vals = keys, key, ts, vals
        self.lo_ms, self.step_ms, self.agg = lo_ms, step_ms, agg

    def grid(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, n) bucket values by ``agg`` from the bucket of ``lo_ms`` on, and where a bucket has any."""
        assert self.step_ms is not None
        first = self.lo_ms // self.step_ms * self.step_ms
        k = (self.ts // self.step_ms * self.step_ms - first) // self.step_ms
        inside = (k >= 0) & (k < n)
        cell = self.key[inside] * n + k[inside]
        vals, ts = self.vals[inside], self.ts[inside]
        size = len(self.keys) * n
        count = np.bincount(cell, minlength=size)
        if self.agg == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.bincount(cell, vals, minlength=size) / count
        elif self.agg in ("min", "max"):
            out = np.full(size, np.inf if self.agg == "min" else -np.inf)
            (np.minimum if self.agg == "min" else np.maximum).at(out, cell, vals)
        else:  # last: the latest sample of each bucket
            order = np.lexsort((ts, cell))
            c = cell[order]
            last = np.flatnonzero(np.r_[c[1:] != c[:-1], True]) if len(c) else np.empty(0, np.int64)
            out = np.full(size, np.nan)
            out[c[last]] = vals[order][last]
        seen = count > 0
        return np.where(seen, out, np.nan).reshape(len(self.keys), n), seen.reshape(len(self.keys), n)

    def pieces(self, hi_ms: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """(uuid, column, ts_ms, values) per series: raw samples, or bucket starts and values."""
        out: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        if not self.keys:
            return out
        if self.step_ms is None:
            order = np.lexsort((self.ts, self.key))
            key, ts, vals = self.key[order], self.ts[order], self.vals[order]
            bounds = np.searchsorted(key, np.arange(len(self.keys) + 1))
            for i, (uuid, col) in enumerate(self.keys):
                a, b = bounds[i], bounds[i + 1]
                out.append((uuid, col, ts[a:b], vals[a:b]))
            return out
        first = self.lo_ms // self.step_ms * self.step_ms
        n = max(0, -(-(hi_ms - first) // self.step_ms))
        grid, seen = self.grid(n)
        starts = first + self.step_ms * np.arange(n, dtype=np.int64)
        for i, (uuid, col) in enumerate(self.keys):
            sel = seen[i]
            out.append((uuid, col, starts[sel], grid[i, sel]))
        return out


def _parse_export(body: bytes, labels: tuple[str, ...],
                  ) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray, np.ndarray]:
    """``/api/v1/export``'s JSON lines -> (labels per series, samples per series, ts_ms, values), the
    samples of all series concatenated. pyarrow's JSON reader parses it in C++ (several threads)."""
    import pyarrow as pa
    import pyarrow.json as pj

    if not body.strip():
        return [], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    schema = pa.schema([("metric", pa.struct([(lab, pa.string()) for lab in labels])),
                        ("values", pa.list_(pa.float64())), ("timestamps", pa.list_(pa.int64()))])
    try:
        tbl = pj.read_json(pa.BufferReader(body), parse_options=pj.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"), read_options=pj.ReadOptions(
                block_size=1 << 24))
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a value pyarrow does not take (null, "NaN"): line by line
        return _parse_lines(body.decode(), labels)
    met = tbl.column("metric").combine_chunks()
    cols = {lab: met.field(lab).to_pylist() for lab in labels}
    metrics = [{lab: cols[lab][i] for lab in labels if cols[lab][i] is not None} for i in range(len(met))]
    values = tbl.column("values").combine_chunks()
    stamps = tbl.column("timestamps").combine_chunks()
    lengths = values.value_lengths().to_numpy(zero_copy_only=False)
    if not np.array_equal(lengths, stamps.value_lengths().to_numpy(zero_copy_only=False)):
        return _parse_lines(body.decode(), labels)
    vals = values.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    ts = stamps.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return metrics, lengths.astype(np.int64), ts, vals


def _parse_lines(text: str, labels: tuple[str, ...],
                 ) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray, np.ndarray]:
    metrics: list[dict[str, str]] = []
    lengths, tss, vss = [], [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        v = np.array([np.nan if x is None else float(x) for x in row.get("values", [])])
        t = np.asarray(row.get("timestamps", []), dtype=np.int64)
        if len(v) != len(t):
            continue
        met = row.get("metric", {})
        metrics.append({lab: str(met[lab]) for lab in labels if lab in met})
        lengths.append(len(v))
        tss.append(t)
        vss.append(v)
    if not metrics:
        return [], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return metrics, np.asarray(lengths, np.int64), np.concatenate(tss), np.concatenate(vss)


def detect_kind(url: str, timeout: float = 10.0) -> str:
    """``victoriametrics`` when ``URL/health`` answers ``OK`` (VictoriaMetrics), else ``prometheus``."""
    try:
        r = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"history store at {url} is unreachable: {exc}") from None
    return "victoriametrics" if r.status_code == 200 and r.text.strip() == "OK" else "prometheus"


def open_history(target: str | Path, *, kind: str = "auto", names: str = "native",
                 selector: dict[str, str] | None = None, timeout: float = 60.0) -> HistoryReader:
    """A history reader over a store folder or a Prometheus / VictoriaMetrics URL."""
    text = str(target)
    if not text.startswith(("http://", "https://")):
        from gpufleet.analytics.history.store import StoreReader

        path = Path(text)
        if not path.is_dir():
            raise ConfigError(f"history {text!r} is neither an http(s) URL nor a history store folder")
        return StoreReader(path)
    if kind not in (*KINDS, "auto"):
        raise ConfigError(f"history kind must be auto, {' or '.join(KINDS)}, got {kind!r}")
    if names not in ("native", "dcgm"):
        raise ConfigError(f"history names must be native or dcgm, got {names!r}")
    if kind == "auto":
        kind = detect_kind(text)
    cls = ScrapedVictoriaReader if kind == "victoriametrics" else PrometheusReader
    return cls(text, names=names, selector=selector, timeout=timeout)


def read_panel(reader: HistoryReader, since: float, until: float, step: float,
               fields: Sequence[str] = FAILURE_FIELDS, chunk_s: float = 86400.0) -> Panel:
    """``fields`` of every GPU on the grid ``[since, until)`` at ``step``, ``chunk_s`` seconds per read
    (each chunk one request per field group), as a raw panel (counters not yet differenced)."""
    since = float(np.floor(since / step) * step)
    times = _grid(since, until, step)
    if not len(times):
        raise ConfigError(f"no time between {since} and {until} at step {step}")
    chunk = max(step, float(np.floor(chunk_s / step) * step))
    uuids: dict[str, int] = {}
    values = np.full((0, len(times), len(fields)), np.nan, dtype=np.float32)
    a = since
    while a < until:
        b = min(a + chunk, until)
        grid = getattr(reader, "panel_grid", None)
        p = grid(a, b, step, fields) if grid is not None else panel_from_reader(reader, a, b, step, fields)
        for u in p.uuids:
            uuids.setdefault(u, len(uuids))
        if len(uuids) > values.shape[0]:  # GPUs first seen in this chunk: grow (rare)
            more = np.full((len(uuids) - values.shape[0], len(times), len(fields)), np.nan, dtype=np.float32)
            values = np.concatenate([values, more])
        if p.uuids:
            k = round((a - since) / step)
            n = min(p.values.shape[1], len(times) - k)
            values[np.array([uuids[u] for u in p.uuids]), k:k + n] = p.values[:, :n]
        del p
        a = b
    return Panel(list(uuids), times, tuple(fields), values)


def seconds(ts: pd.Series) -> np.ndarray:
    """Unix seconds of a frame's ``ts`` column, whatever its resolution (pandas 3 reads ``us``)."""
    return np.asarray(ts.dt.as_unit("ns").astype("int64").to_numpy(), dtype=np.float64) / 1e9


def lost_events(reader: HistoryReader, since: float, until: float, step: float) -> dict[str, np.ndarray]:
    """When each GPU was first seen lost after being up (``gpu_up`` buckets by ``min``): failure labels
    for a fleet store, which keeps no ground truth."""
    df = reader.read(["up"], since, until, step=step, agg="min")
    out: dict[str, np.ndarray] = {}
    if not len(df) or "up" not in df.columns:
        return out
    codes, names = pd.factorize(df["uuid"].astype(str))
    ts = seconds(df["ts"])
    order = np.lexsort((ts, codes))  # by GPU, then time: one pass over every row, whatever the fleet size
    g, t, v = codes[order], ts[order], df["up"].to_numpy(dtype=np.float64)[order]
    fell = np.flatnonzero((g[1:] == g[:-1]) & (v[1:] < 1) & (v[:-1] >= 1)) + 1
    if not len(fell):
        return out
    bounds = np.flatnonzero(np.r_[True, g[fell][1:] != g[fell][:-1], True])
    for a, b in itertools.pairwise(bounds):
        out[str(names[g[fell[a]]])] = t[fell[a:b]].astype(float)
    return out


def read_history(reader: HistoryReader, since: float, until: float, step: float = 300.0,
                 fields: Sequence[str] = FAILURE_FIELDS, chunk_s: float = 86400.0) -> Any:
    """A :class:`~analytics.failure.History` for training / scoring, from any reader.

    The embedded store's reader brings its ground-truth labels; a Prometheus / VictoriaMetrics one
    the GPUs' lost events."""
    from gpufleet.analytics.datasets import failures_by_uuid
    from gpufleet.analytics.failure import History
    from gpufleet.analytics.history.store import StoreReader

    panel = prepare(read_panel(reader, since, until, step, fields, chunk_s))
    if isinstance(reader, StoreReader):
        failures = failures_by_uuid(reader.store.labels(since, until))
        source = "store"
    else:
        failures = lost_events(reader, since, until, step)
        source = getattr(reader, "url", reader.name)
    return History(panel, failures, [], source=str(source))


def span(reader: HistoryReader) -> tuple[float | None, float | None]:
    """The store's first and last sample time (the embedded store only; None for a server)."""
    from gpufleet.analytics.history.store import StoreReader

    if isinstance(reader, StoreReader):
        lo, hi = reader.store.span()
        return lo, hi
    return None, None
