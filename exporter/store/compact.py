"""Compaction: merge the segments of a closed period into one file (fewer files, faster reads).

Periods: one UTC day for raw and 1-minute segments and events; hourly ones by day, then by 30 days. A period is compacted
once the newest data is past its end and it holds more than one segment whose time ranges do not
overlap (overlapping ones, left by a writer restarted mid-window, are left as they are: readers
merge them). The merged file is streamed segment by segment (one window in memory at a time),
written atomically with the union of the sequence ranges, and only then are the old files
removed; readers ignore files inside a wider file's range, so they never see a row twice.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from gpufleet.exporter.store.integrity import VERIFIER, remove_segment
from gpufleet.exporter.store.layout import Segment, list_segments, segment_name
from gpufleet.exporter.store.segments import seal

DAY_MS = 86_400_000
PERIOD_MS = {"raw": (DAY_MS,), "1m": (DAY_MS,), "1h": (DAY_MS, 30 * DAY_MS), "events": (DAY_MS,)}
COMPRESSION = {"raw": "zstd", "1m": "lz4", "1h": "lz4", "events": "zstd"}


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        base, _, agg = f.name.rpartition(":")
        name = f.name
        if name not in t.column_names and base and agg != "mean" and f"{base}:mean" in t.column_names:
            name = f"{base}:mean"  # a one-sample-per-bucket table: min = max = last = mean
        if name in t.column_names:
            c = t[name]
            cols.append(c.cast(f.type) if c.type != f.type else c)
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def merge(segs: list[Segment], path: Path, compression: str, fsync: bool = True) -> None:
    """Stream ``segs`` (disjoint, in time order) into one Parquet file at ``path`` (atomically)."""
    schemas = [pq.read_schema(s.path) for s in segs]
    names: list[str] = []
    for sch in schemas:
        names += [n for n in sch.names if n not in names]
    fixed = [n for n in ("ts", "uuid", "n") if n in names]
    rest = [n for n in names if n not in fixed]
    if "kind" not in names:  # sample tables: series columns in name order
        rest.sort()
    fields = []
    for n in fixed + rest:
        if n == "uuid" and any(pa.types.is_dictionary(sch.field(n).type) for sch in schemas if n in sch.names):
            fields.append(pa.field("uuid", pa.dictionary(pa.int32(), pa.string())))
        else:
            fields.append(next(sch.field(n) for sch in schemas if n in sch.names))
    fields = [f.with_nullable(not all(f.name in sch.names and not sch.field(f.name).nullable for sch in schemas))
              for f in fields]
    schema = pa.schema(fields)
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, schema, compression=compression, write_statistics=["ts", "uuid"]) as w:
        for s in segs:
            w.write_table(_conform(pq.read_table(s.path), schema), row_group_size=1 << 20)
    if fsync:
        with open(tmp, "rb") as fh:
            import os

            os.fsync(fh.fileno())
    seal(tmp, path, fsync)


def compact(folder: Path, tier: str, now_ms: int, fsync: bool = True) -> int:
    """Compact every closed period of a tier folder; returns the number of files merged away."""
    return sum(_compact(folder, tier, period, now_ms, fsync) for period in PERIOD_MS[tier])


def _compact(folder: Path, tier: str, period: int, now_ms: int, fsync: bool) -> int:
    merged = 0
    segs = list_segments(folder)
    for p0, group_it in itertools.groupby(segs, key=lambda s: s.tmin // period):
        group = sorted(group_it, key=lambda s: s.tmin)
        if len(group) < 2 or (p0 + 1) * period > now_ms:
            continue
        if any(s.tmax // period != p0 for s in group):
            continue  # a segment straddles the period edge
        if any(a.tmax >= b.tmin for a, b in itertools.pairwise(group)):
            continue  # overlapping partial windows: leave them to the readers' merge
        lo = min(s.lo for s in group)
        hi = max(s.hi for s in group)
        if any(s.hi >= lo and s.lo <= hi for s in segs if s not in group):
            continue  # another segment's sequence numbers fall in this range: it would be shadowed
        if len(VERIFIER.good(group, folder.parent)) != len(group):
            continue  # a damaged input was quarantined: never seal its bytes into a new file
        target = folder / segment_name(group[0].tmin, max(s.tmax for s in group), lo, hi)
        merge(group, target, COMPRESSION[tier], fsync)
        for s in group:
            remove_segment(s.path)
        merged += len(group)
    return merged
