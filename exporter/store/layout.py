"""On-disk layout of the history store: tiers, segment file names, listing and atomic writes.

A store is a folder::

    STORE/
      FORMAT                     format marker ("gpufleet-history 1")
      LOCK                       flock()ed by the one writer process
      devices.json               device metadata (latest per uuid), rewritten atomically
      wal/000042.wal             write-ahead log of the open window (one per segment sequence number)
      raw/<tmin>-<tmax>-<lo>-<hi>.parquet     raw samples, one row per (ts, uuid), one column per series
      1m/...parquet  1h/...parquet             rollups: <series>:min/:mean/:max/:last columns + n
      events/...parquet  labels/...parquet     events and ground-truth labels (long tables)

Every segment file is written to a temporary name, fsynced and renamed into place, so a reader
sees a whole file or none. ``lo``/``hi`` are the sequence numbers of the write-ahead logs the file
holds; a file whose range lies inside another file's range (left behind by an interrupted
compaction) is ignored by readers and deleted by the writer.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

FORMAT_MARKER = "gpufleet-history 1\n"

TIERS: dict[str, int] = {"raw": 0, "1m": 60_000, "1h": 3_600_000}
"""Sample tiers and their resolution in milliseconds (0 = as collected)."""

ROLLUP_AGGS = ("min", "mean", "max", "last")
TABLE_DIRS = ("events", "labels")

_SEG_RE = re.compile(r"^(-?\d+)-(-?\d+)-(\d+)-(\d+)\.parquet$")
_WAL_RE = re.compile(r"^(\d+)\.wal$")


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    tmin: int  # ms, inclusive
    tmax: int  # ms, inclusive
    lo: int
    hi: int

    def covers(self, seq: int) -> bool:
        return self.lo <= seq <= self.hi


def segment_name(tmin: int, tmax: int, lo: int, hi: int) -> str:
    return f"{tmin}-{tmax}-{lo:06d}-{hi:06d}.parquet"


def list_segments(folder: Path) -> list[Segment]:
    """Segments in a tier folder, sorted by sequence, without those shadowed by a compacted file."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    segs = []
    for name in names:
        m = _SEG_RE.match(name)
        if m:
            segs.append(Segment(folder / name, int(m[1]), int(m[2]), int(m[3]), int(m[4])))
    segs.sort(key=lambda s: (s.lo, -s.hi))
    out: list[Segment] = []
    reach = -1
    for s in segs:
        if s.hi <= reach:  # inside an earlier, wider segment
            continue
        out.append(s)
        reach = max(reach, s.hi)
    return out


def shadowed_segments(folder: Path) -> list[Path]:
    """Files that list_segments() ignores (inside a wider compacted segment)."""
    keep = {s.path for s in list_segments(folder)}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [folder / n for n in names if _SEG_RE.match(n) and folder / n not in keep]


def list_wals(folder: Path) -> list[tuple[int, Path]]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = [(int(m[1]), folder / n) for n in names if (m := _WAL_RE.match(n))]
    out.sort()
    return out


def wal_name(seq: int) -> str:
    return f"{seq:06d}.wal"


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def series_name(field: str, labels: tuple[tuple[str, str], ...]) -> str:
    """The column name of a series: ``field`` or ``field{k=v,k2=v2}``."""
    if not labels:
        return field
    return field + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"


def series_field(name: str) -> str:
    i = name.find("{")
    return name if i < 0 else name[:i]


def dir_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, f)).st_size
    return total
