"""Reading a history store (from any process, while the writer writes): samples, events, devices.

A read lists the open write-ahead logs first and the committed segments second; a log whose
sequence number a segment of the tier already holds is skipped (it was committed meanwhile), so
every sample is read exactly once. Files removed by retention or compaction during a read make
the read start over (a few times at most).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.schema import Device, Event, EventKind
from gpufleet.exporter.store.integrity import VERIFIER
from gpufleet.exporter.store.layout import TIERS, list_segments, list_wals, series_field
from gpufleet.exporter.store.wal import WalContents, read_wal

if TYPE_CHECKING:  # pyarrow is imported where it is used: the exporter's own imports stay light
    import pyarrow as pa

AGGS = ("mean", "min", "max", "last")
log = logging.getLogger(__name__)
_WARNED: set[tuple[Path, int]] = set()
_DEVICE_FIELDS = {f for f in Device.__dataclass_fields__}


class ReadResult:
    """Columnar result of a read: one row per (ts, uuid), sorted by ts then uuid.

    ``ts_ms`` (int64 unix milliseconds; bucket start when bucketed), ``codes`` (int32 index into
    ``uuids``), ``columns`` ({series name: float64 array}, NaN where a device has no value),
    ``n`` (raw rows behind each row). ``to_pandas()`` / ``to_arrow()`` convert (pandas is
    imported only then).
    """

    def __init__(self, ts_ms: np.ndarray, codes: np.ndarray, uuids: list[str], columns: dict[str, np.ndarray],
                 n: np.ndarray | None = None, resolution: str = "raw", step: float | None = None) -> None:
        self.ts_ms = ts_ms
        self.codes = codes
        self.uuids = uuids
        self.columns = columns
        self.n = n if n is not None else np.ones(len(ts_ms), np.int64)
        self.resolution = resolution
        self.step = step

    def __len__(self) -> int:
        return len(self.ts_ms)

    @property
    def ts(self) -> np.ndarray:
        """Timestamps as float unix seconds."""
        return self.ts_ms / 1000.0

    @property
    def uuid(self) -> np.ndarray:
        """The uuid of every row (object array)."""
        return np.asarray(self.uuids, dtype=object)[self.codes] if len(self.uuids) else np.empty(0, object)

    def to_arrow(self) -> pa.Table:
        import pyarrow as pa

        cols: dict[str, Any] = {
            "ts": pa.array(self.ts_ms, pa.timestamp("ms", tz="UTC")),
            "uuid": pa.DictionaryArray.from_arrays(pa.array(self.codes, pa.int32()), pa.array(self.uuids, pa.string())),
        }
        for k, v in self.columns.items():
            cols[k] = pa.array(v, from_pandas=True)
        return pa.table(cols)

    def to_pandas(self) -> Any:
        """A pandas DataFrame: ``ts`` (datetime64[ms, UTC]), ``uuid`` (categorical), one float column per series.

        When the columns share one 2-D block (a plain read), the frame uses it without copying.
        """
        import pandas as pd

        names = list(self.columns)
        block = self._block()
        if block is not None:
            df = pd.DataFrame(block.T, columns=names, copy=False)
        else:
            df = pd.DataFrame(dict(self.columns), copy=False) if names else pd.DataFrame(index=range(len(self)))
        # one copy for the UTC timestamps; inserting Series (not arrays) avoids a second one
        ts = pd.DatetimeIndex(np.asarray(self.ts_ms, np.int64).view("datetime64[ms]"), copy=False).tz_localize("UTC")
        df.insert(0, "ts", pd.Series(ts.array, copy=False))
        uuid: Any = (pd.Categorical.from_codes(self.codes, dtype=pd.CategoricalDtype(pd.Index(self.uuids)),
                                               validate=False) if self.uuids else pd.Categorical([]))
        df.insert(1, "uuid", pd.Series(uuid, copy=False))
        return df

    def _block(self) -> np.ndarray | None:
        """The (series, rows) array all columns are rows of, if there is one."""
        cols = list(self.columns.values())
        if not cols:
            return None
        base = cols[0].base
        if not isinstance(base, np.ndarray) or base.ndim != 2 or base.shape[0] != len(cols):
            return None
        for j, c in enumerate(cols):
            if c.base is not base or c.__array_interface__["data"][0] != base[j].__array_interface__["data"][0]:
                return None
        return base


def _matches(column: str, fields: Sequence[str] | None) -> bool:
    if fields is None:
        return True
    return column in fields or series_field(column) in fields


def _to_ms(t: float | None) -> int | None:
    return None if t is None else math.floor(t * 1000 + 0.5)


class StoreReader:
    """Read-only access to a store folder; never takes the writer lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _good(self, folder: str) -> list[Any]:
        """Segments of ``folder`` that verify against their digest; damaged ones are skipped and quarantined."""
        return VERIFIER.good(list_segments(self.path / folder), self.path)

    # ------------------------------------------------------------------ wal
    def _wal_contents(self, folder: str) -> list[tuple[int, WalContents]]:
        """Open logs not yet committed to ``folder`` (listed before the folder, see module doc)."""
        wals = list_wals(self.path / "wal")
        segs = list_segments(self.path / folder)
        out = []
        for seq, p in wals:
            if any(s.covers(seq) for s in segs):
                continue
            c = read_wal(p)
            if c is not None:
                if c.damaged and (p, c.size) not in _WARNED:
                    _WARNED.add((p, c.size))
                    log.warning("history store %s: open write-ahead log %s is corrupt: %s", self.path, p.name,
                                c.describe())
                out.append((seq, c))
        return out

    def _wal_long(self, contents: list[tuple[int, WalContents]], fields: Sequence[str] | None) -> list[Any]:
        from gpufleet.exporter.store.segments import Long

        out = []
        for _seq, c in contents:
            ts, uc, sc, vals = c.arrays()
            if not len(vals):
                continue
            ns = max(c.series, default=-1) + 1
            snames = [c.series.get(i, "") for i in range(ns)]
            keep = np.array([_matches(s, fields) for s in snames], bool)
            nu = max(c.uuids, default=-1) + 1
            long = Long(ts, uc, sc, vals, [c.uuids.get(i, "") for i in range(nu)], snames)
            long = long.select_series(keep)
            if len(long):
                out.append(long)
        return out

    # ------------------------------------------------------------------ metadata
    def span_ms(self) -> tuple[int | None, int | None]:
        lo: int | None = None
        hi: int | None = None
        for tier, res in TIERS.items():  # rollup tiers only count where they reach further back
            segs = list_segments(self.path / tier)
            if not segs:
                continue
            tlo = min(s.tmin for s in segs)
            if lo is None or tlo + res <= lo:
                lo = tlo
            if res == 0 or hi is None:
                hi = max(s.tmax for s in segs) if hi is None else max(hi, max(s.tmax for s in segs))
        for _seq, c in self._wal_contents("raw"):
            ts = c.arrays()[0]
            if len(ts):
                lo = int(ts.min()) if lo is None else min(lo, int(ts.min()))
                hi = int(ts.max()) if hi is None else max(hi, int(ts.max()))
        return lo, hi

    def device_records(self) -> dict[str, dict[str, Any]]:
        try:
            recs: dict[str, dict[str, Any]] = json.loads((self.path / "devices.json").read_text())
        except FileNotFoundError:
            recs = {}
        for _seq, c in self._wal_contents("raw"):
            for d in c.devices:
                recs[d["uuid"]] = d
        return recs

    def devices(self) -> list[Device]:
        out = [Device(**{k: v for k, v in r.items() if k in _DEVICE_FIELDS}) for r in self.device_records().values()]
        out.sort(key=lambda d: (d.node, d.index, d.uuid))
        return out

    def series_names(self) -> list[str]:
        import pyarrow.parquet as pq

        names: set[str] = set()
        for s in self._good("raw"):
            try:
                names.update(pq.read_schema(s.path).names)
            except FileNotFoundError:
                continue
        names -= {"ts", "uuid"}
        for _seq, c in self._wal_contents("raw"):
            names.update(c.series.values())
        if not names:
            for s in list_segments(self.path / "1h"):
                try:
                    names.update(n.rsplit(":", 1)[0] for n in pq.read_schema(s.path).names if ":" in n)
                except FileNotFoundError:
                    continue
        return sorted(names)

    # ------------------------------------------------------------------ events
    def events(self, folder: str, since: float | None, until: float | None, kinds: Sequence[str] | None,
               uuids: Sequence[str] | None) -> list[Event]:
        import pyarrow.parquet as pq

        lo, hi = _to_ms(since), _to_ms(until)
        rows: list[dict[str, Any]] = []
        for _attempt in range(5):
            rows = []
            contents = self._wal_contents(folder)
            try:
                for s in self._good(folder):
                    if (lo is not None and s.tmax < lo) or (hi is not None and s.tmin >= hi):
                        continue
                    rows += pq.read_table(s.path).to_pylist()
                break
            except FileNotFoundError:
                continue
        for _seq, c in contents:
            for e in c.labels if folder == "labels" else c.events:
                rows.append({"ts": e["ts"], "kind": e["kind"], "uuid": e.get("uuid", ""),
                             "node": e.get("node", ""), "code": e.get("code"),
                             "detail": json.dumps(e.get("detail") or {})})
        kset = {str(k) for k in kinds} if kinds else None
        uset = set(uuids) if uuids else None
        out = []
        for r in rows:
            if (lo is not None and r["ts"] < lo) or (hi is not None and r["ts"] >= hi):
                continue
            if (kset and r["kind"] not in kset) or (uset and r["uuid"] not in uset):
                continue
            try:
                kind: Any = EventKind(r["kind"])
            except ValueError:
                kind = r["kind"]
            out.append(Event(ts=r["ts"] / 1000, kind=kind, uuid=r["uuid"], node=r["node"] or "",
                             code=r["code"], detail=json.loads(r["detail"] or "{}")))
        out.sort(key=lambda e: e.ts)
        return out

    # ------------------------------------------------------------------ samples
    def choose_tier(self, step_ms: int | None, since_ms: int | None) -> str:
        if step_ms:
            return [t for t, r in TIERS.items() if r <= step_ms][-1]
        firsts = {t: min((s.tmin for s in list_segments(self.path / t)), default=None) for t in TIERS}
        if all(v is None for v in firsts.values()):
            return "raw"
        earliest = min(v for v in firsts.values() if v is not None)
        target = earliest if since_ms is None else max(since_ms, earliest)
        for t, res in TIERS.items():
            f = firsts[t]
            if f is None and t == "raw":
                continue
            if f is not None and f <= target + res:
                return t
        return "1h"

    def read(self, fields: Sequence[str], uuids: Sequence[str] | None = None, since: float | None = None,
             until: float | None = None, step: float | None = None, agg: str = "mean",
             resolution: str = "auto") -> ReadResult:
        if agg not in AGGS:
            raise ConfigError(f"agg must be one of {AGGS}, got {agg!r}")
        if resolution != "auto" and resolution not in TIERS:
            raise ConfigError(f"resolution must be auto or one of {tuple(TIERS)}, got {resolution!r}")
        if isinstance(fields, str):
            fields = [fields]
        step_ms = _to_ms(step) if step else None
        if step_ms is not None and step_ms <= 0:
            raise ConfigError("step must be positive")
        lo, hi = _to_ms(since), _to_ms(until)
        tier = resolution if resolution != "auto" else self.choose_tier(step_ms, lo)
        for attempt in range(5):
            try:
                return self._read_once(tier, list(fields), lo, hi, agg, uuids, step_ms, step)
            except FileNotFoundError:  # retention or compaction removed a file meanwhile: start over
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _read_once(self, tier: str, fields: list[str], lo: int | None, hi: int | None, agg: str,
                   uuids: Sequence[str] | None, step_ms: int | None, step: float | None) -> ReadResult:
        """Plan the pieces, allocate the result once, then stream each file into it.

        Whole files inside the window are read one at a time (only the result and one file are
        in memory); edge files and the open log are read up front to learn their row counts.
        """
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        from gpufleet.exporter.store.segments import raw_table, rollup_table

        res = TIERS[tier]
        contents = self._wal_contents(tier)
        pieces: list[_Piece] = []
        for seg in self._good(tier):
            if (lo is not None and seg.tmax < lo) or (hi is not None and seg.tmin >= hi):
                continue
            pf = pq.ParquetFile(seg.path)
            cols = _columns(pf.schema_arrow.names, fields, res, agg)
            filters = _filters(seg.tmin, seg.tmax, lo, hi)
            if filters is None:  # the whole file is inside the window: read it later, when filling
                pieces.append(_Piece(seg.tmin, seg.tmax, pf.metadata.num_rows, cols, res, path=seg.path))
            else:
                t = self._select(pq.read_table(seg.path, columns=cols, filters=filters), res)
                if t.num_rows:
                    pieces.append(_Piece.of(t, res))
        for long in self._wal_long(contents, fields):
            t = raw_table(long) if res == 0 else rollup_table(long, res)
            t = self._select(t.select(_columns(t.schema.names, fields, res, agg)), res)
            mask = None
            if lo is not None:
                mask = pc.greater_equal(t["ts"], lo)
            if hi is not None:
                m2 = pc.less(t["ts"], hi)
                mask = m2 if mask is None else pc.and_(mask, m2)
            t = t.filter(mask) if mask is not None else t
            if t.num_rows:
                pieces.append(_Piece.of(t, res))
        pieces = [p for p in pieces if p.rows]
        # Segments hold unique rows sorted by (ts, uuid); when their time ranges do not overlap and
        # no re-bucketing is asked for, filling them in order already gives the answer.
        disjoint = all(x.tmax < y.tmin for x, y in itertools.pairwise(pieces))
        if not disjoint:
            pieces.sort(key=lambda p: (p.tmin, p.tmax))
        plain = disjoint and (step_ms is None or (res and step_ms == res))
        return _fill_result(pieces, uuids, None if plain else (step_ms or 0), agg, tier, step)

    @staticmethod
    def _select(t: pa.Table, res: int) -> pa.Table:
        """Rename rollup columns ``series:agg`` to ``series``."""
        if res:
            return t.rename_columns([c.rsplit(":", 1)[0] if ":" in c else c for c in t.schema.names])
        return t


class _Piece:
    """A table to copy into the result, read already (edges, log) or read when filling (whole files)."""

    def __init__(self, tmin: int, tmax: int, rows: int, columns: list[str], res: int,
                 path: Path | None = None, table: pa.Table | None = None) -> None:
        self.tmin, self.tmax, self.rows, self.res = tmin, tmax, rows, res
        self.path, self.table = path, table
        self.series = [c.rsplit(":", 1)[0] if res and ":" in c else c for c in columns
                       if c not in ("ts", "uuid", "n")]
        self.columns = columns

    @classmethod
    def of(cls, t: pa.Table, res: int) -> _Piece:
        import pyarrow.compute as pc

        return cls(pc.min(t["ts"]).as_py(), pc.max(t["ts"]).as_py(), t.num_rows, t.column_names, 0, table=t)

    def load(self) -> pa.Table:
        if self.table is not None:
            t, self.table = self.table, None
            return t
        import pyarrow.parquet as pq

        assert self.path is not None
        return StoreReader._select(pq.ParquetFile(self.path).read(columns=self.columns), self.res)


def _columns(names: list[str], fields: list[str], res: int, agg: str) -> list[str]:
    if res == 0:
        return ["ts", "uuid"] + [c for c in names if c not in ("ts", "uuid") and _matches(c, fields)]
    have = set(names)
    out = ["ts", "uuid", "n"]
    for c in names:
        base, _, a = c.rpartition(":")
        if not base or not _matches(base, fields):
            continue
        # the asked aggregate, or the mean where a file keeps only the mean (one sample per bucket)
        if a == agg or (a == "mean" and f"{base}:{agg}" not in have):
            out.append(c)
    return out


def _filters(tmin: int, tmax: int, lo: int | None, hi: int | None) -> list[tuple[str, str, int]] | None:
    f = []
    if lo is not None and tmin < lo:
        f.append(("ts", ">=", lo))
    if hi is not None and tmax >= hi:
        f.append(("ts", "<", hi))
    return f or None


def _fill(out: np.ndarray, chunked: pa.ChunkedArray, at: int) -> int:
    """Copy a chunked column into ``out[at:]`` (nulls become NaN); returns the next position."""
    for ch in chunked.chunks:
        v = ch.to_numpy(zero_copy_only=False)
        out[at:at + len(v)] = v
        at += len(v)
    return at


def _fill_result(pieces: list[_Piece], uuids: Sequence[str] | None, step_ms: int | None, agg: str, tier: str,
                 step: float | None) -> ReadResult:
    """Copy every piece once into numpy: ts, uuid codes, n and one (series, rows) float block."""
    if not pieces:
        return ReadResult(np.empty(0, np.int64), np.empty(0, np.int32), [], {}, resolution=tier, step=step)
    total = sum(p.rows for p in pieces)
    series = sorted({c for p in pieces for c in p.series})
    ts = np.empty(total, np.int64)
    codes = np.empty(total, np.int32)
    n = np.ones(total, np.int32)
    block = np.empty((len(series), total), np.float64)
    names: list[str] = []
    index: dict[str, int] = {}
    at = 0
    for p in pieces:
        t = p.load()
        rows = t.num_rows
        if rows != p.rows:
            raise FileNotFoundError(f"{p.path} changed while reading")
        _fill(ts, t["ts"], at)
        pos = at
        for ch in t["uuid"].chunks:
            d = ch.dictionary.to_pylist()
            for u in d:
                if u not in index:
                    index[u] = len(names)
                    names.append(u)
            remap = np.fromiter((index[u] for u in d), np.int32, len(d))
            idx = ch.indices.to_numpy(zero_copy_only=False)
            codes[pos:pos + len(idx)] = idx if np.array_equal(remap, np.arange(len(d))) else remap[idx]
            pos += len(idx)
        if "n" in t.column_names:
            _fill(n, t["n"], at)
        for j, c in enumerate(series):
            if c in t.column_names:
                _fill(block[j], t[c], at)
            else:
                block[j, at:at + rows] = np.nan
        at += rows
        del t
    order = np.argsort(np.asarray(names, dtype=object).astype(str), kind="stable")
    sorted_names = [names[i] for i in order]
    if not np.array_equal(order, np.arange(len(names))):  # codes in sorted-uuid order
        rank = np.empty(len(names), np.int32)
        rank[order] = np.arange(len(names), dtype=np.int32)
        codes = rank[codes]
    cols = {c: block[j] for j, c in enumerate(series)}
    if uuids is not None:
        want = np.array([sorted_names.index(u) for u in uuids if u in sorted_names], np.int32)
        mask = np.isin(codes, want)
        ts, codes, n = ts[mask], codes[mask], n[mask]
        cols = {c: v[mask] for c, v in cols.items()}
    if step_ms is not None:
        ts, codes, n, cols = aggregate(ts, codes, n, cols, step_ms or None, agg, len(sorted_names))
    return ReadResult(ts, codes, sorted_names, cols, n=n, resolution=tier, step=step)


def aggregate(ts: np.ndarray, codes: np.ndarray, n: np.ndarray, cols: dict[str, np.ndarray], step_ms: int | None,
              agg: str, nuuids: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Bucket rows to ``step_ms`` (or merge duplicate (ts, uuid) rows) with ``agg``; n-weighted means."""
    if not len(ts):
        return ts, codes, n, cols
    bucket = ts // step_ms * step_ms if step_ms else ts
    b0 = int(bucket.min())
    key = ((bucket - b0) // (step_ms or 1)) * max(nuuids, 1) + codes
    if (step_ms is None or np.array_equal(bucket, ts)) and bool(np.all(key[1:] > key[:-1])):
        return ts, codes, n, cols  # already one row per (bucket, uuid)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    first = order[starts]
    w = n[order].astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for c, v0 in cols.items():
        v = v0[order]
        valid = ~np.isnan(v)
        if agg == "mean":
            num = np.add.reduceat(np.where(valid, v * w, 0.0), starts)
            den = np.add.reduceat(np.where(valid, w, 0.0), starts)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[c] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        elif agg == "min":
            out[c] = np.fmin.reduceat(v, starts)
        elif agg == "max":
            out[c] = np.fmax.reduceat(v, starts)
        else:
            pos = np.where(valid, np.arange(len(v)), -1)
            lastpos = np.maximum.reduceat(pos, starts)
            out[c] = np.where(lastpos >= 0, v[np.maximum(lastpos, 0)], np.nan)
    nn = np.add.reduceat(n[order], starts)
    return bucket[first], codes[first].astype(np.int32), nn, out
