"""Turn long sample arrays into wide segment tables (raw and rollups) and write them as Parquet.

Wide tables have one row per (ts, uuid), sorted by ts then uuid, and one float64 column per
series (absent values are nulls). Rollup tables have ``<series>:min``, ``:mean``, ``:max`` and
``:last`` columns plus ``n`` (raw rows in the bucket), ``ts`` being the bucket start; a table
whose buckets all hold one raw row keeps only ``:mean`` (the other three equal it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from gpufleet.exporter.store.layout import ROLLUP_AGGS, fsync_dir

EVENT_SCHEMA = pa.schema([("ts", pa.int64()), ("kind", pa.string()), ("uuid", pa.string()),
                          ("node", pa.string()), ("code", pa.int64()), ("detail", pa.string())])


class Long:
    """Long sample arrays with their dictionaries (uuid names by code, series names by code)."""

    def __init__(self, ts: np.ndarray, ucodes: np.ndarray, scodes: np.ndarray, values: np.ndarray,
                 uuids: list[str] | np.ndarray, series: list[str] | np.ndarray) -> None:
        self.ts, self.ucodes, self.scodes, self.values = ts, ucodes, scodes, values
        self.uuids = np.asarray(uuids, dtype=object)
        self.series = np.asarray(series, dtype=object)

    def __len__(self) -> int:
        return len(self.values)

    def select_series(self, keep: np.ndarray) -> Long:
        """Only samples whose series code is in the boolean mask ``keep`` (indexed by code)."""
        m = keep[self.scodes]
        return Long(self.ts[m], self.ucodes[m], self.scodes[m], self.values[m], self.uuids, self.series)


def _uuid_ranks(long: Long) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each uuid code in sorted-uuid order, and the sorted names used."""
    used = np.unique(long.ucodes)
    names = long.uuids[used]
    order = np.argsort(names.astype(str), kind="stable")
    rank = np.full(len(long.uuids), -1, np.int64)
    rank[used[order]] = np.arange(len(used))
    return rank, names[order]


def _series_local(long: Long) -> tuple[np.ndarray, np.ndarray]:
    used = np.unique(long.scodes)
    local = np.full(len(long.series), -1, np.int64)
    local[used] = np.arange(len(used))
    return local, long.series[used]


def _dict_column(codes: np.ndarray, names: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names.astype(str)))


def _float_column(col: np.ndarray) -> pa.Array:
    return pa.array(col, from_pandas=True)  # NaN -> null (absent)


def raw_table(long: Long) -> pa.Table:
    """One row per (ts, uuid), one column per series."""
    rank, unames = _uuid_ranks(long)
    slocal, snames = _series_local(long)
    nu = max(len(unames), 1)
    key = long.ts * nu + rank[long.ucodes]
    rows, inv = np.unique(key, return_inverse=True)
    nr, ns = len(rows), len(snames)
    mat = np.full(nr * ns, np.nan)
    mat[slocal[long.scodes] * nr + inv] = long.values
    cols: dict[str, Any] = {"ts": pa.array(rows // nu), "uuid": _dict_column(rows % nu, unames)}
    for j, name in enumerate(snames):
        cols[str(name)] = _float_column(mat[j * nr:(j + 1) * nr])
    return pa.table(cols)


def rollup_table(long: Long, res_ms: int) -> pa.Table:
    """Min / mean / max / last per (bucket, uuid, series) plus ``n`` per (bucket, uuid)."""
    rank, unames = _uuid_ranks(long)
    slocal, snames = _series_local(long)
    nu, ns = max(len(unames), 1), len(snames)
    bucket = long.ts // res_ms
    b0 = int(bucket.min())
    bk = (bucket - b0) * nu + rank[long.ucodes]  # row key
    key = bk * ns + slocal[long.scodes]
    order = np.lexsort((long.ts, key))
    ks, vs = key[order], long.values[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    ends = np.r_[starts[1:], len(ks)]
    gkey = ks[starts]
    mins = np.minimum.reduceat(vs, starts)
    maxs = np.maximum.reduceat(vs, starts)
    means = np.add.reduceat(vs, starts) / (ends - starts)
    lasts = vs[ends - 1]
    grow = gkey // ns
    rows, inv = np.unique(grow, return_inverse=True)
    nr = len(rows)
    # n: distinct raw timestamps per (bucket, uuid)
    rawkey = np.unique(long.ts * nu + rank[long.ucodes])
    rawrow = ((rawkey // nu) // res_ms - b0) * nu + rawkey % nu
    n = np.bincount(np.searchsorted(rows, rawrow), minlength=nr)
    cols: dict[str, Any] = {
        "ts": pa.array((rows // nu + b0) * res_ms), "uuid": _dict_column(rows % nu, unames),
        "n": pa.array(n.astype(np.int32)),
    }
    sidx = gkey % ns
    # One sample per bucket (sampling no faster than the bucket): min = mean = max = last, so only
    # the mean is kept; readers and compaction use it for the other aggregates.
    single = bool(n.max() <= 1)
    aggs = ("mean",) if single else ROLLUP_AGGS
    for agg, vals in zip(ROLLUP_AGGS, (mins, means, maxs, lasts), strict=True):
        if agg not in aggs:
            continue
        mat = np.full(nr * ns, np.nan)
        mat[sidx * nr + inv] = vals
        for j, name in enumerate(snames):
            cols[f"{name}:{agg}"] = _float_column(mat[j * nr:(j + 1) * nr])
    # group columns by series for readability: series:min, series:mean, ...
    ordered = ["ts", "uuid", "n"] + [f"{name}:{agg}" for name in snames for agg in aggs]
    return pa.table({k: cols[k] for k in ordered})


def event_table(events: list[dict[str, Any]]) -> pa.Table:
    events = sorted(events, key=lambda e: e["ts"])
    return pa.table({
        "ts": pa.array([int(e["ts"]) for e in events], pa.int64()),
        "kind": pa.array([e["kind"] for e in events], pa.string()),
        "uuid": pa.array([e.get("uuid", "") for e in events], pa.string()),
        "node": pa.array([e.get("node", "") for e in events], pa.string()),
        "code": pa.array([e.get("code") for e in events], pa.int64()),
        "detail": pa.array([json.dumps(e.get("detail") or {}, sort_keys=True) for e in events], pa.string()),
    }, schema=EVENT_SCHEMA)


def write_parquet_atomic(table: pa.Table, path: Path, fsync: bool = True, row_group_size: int = 1 << 20,
                         compression: str = "zstd") -> None:
    """Write to a temporary name in the same folder, fsync, seal its digest, rename: all or nothing.

    Raw segments use zstd (smallest); rollups use lz4 (about 2x faster to decode, see docs/storage.md).
    Columns without nulls are written as required (no definition levels: about 30% faster to read).
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    table = required_where_complete(table)
    pq.write_table(table, tmp, compression=compression, row_group_size=row_group_size,
                   write_statistics=["ts", "uuid"])
    if fsync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    seal(tmp, path, fsync)


def seal(tmp: Path, path: Path, fsync: bool = True) -> None:
    """Record ``tmp``'s digest in ``path``'s sidecar, then rename it into place (see integrity.py)."""
    from gpufleet.exporter.store.integrity import VERIFIER, write_sidecar

    write_sidecar(tmp, path, fsync)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)
    VERIFIER.trust(path)


def required_where_complete(table: pa.Table) -> pa.Table:
    """The table with every column that has no nulls marked non-nullable."""
    fields = [f.with_nullable(table[f.name].null_count > 0) for f in table.schema]
    schema = pa.schema(fields)
    return table if schema.equals(table.schema) else pa.Table.from_arrays(table.columns, schema=schema)
