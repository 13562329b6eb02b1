"""HistoryStore: the embedded history (one writer process, any number of reader processes).

Write path: every ``write(snapshot)`` appends one checksummed record to the write-ahead log of the
open window with a single unbuffered ``write(2)`` (so ``kill -9`` loses at most that call) and
keeps the samples in memory. When the data crosses a window boundary (``segment_seconds``,
aligned), the window is committed: raw, 1-minute and 1-hour Parquet segments, events and labels,
each written atomically by rename, then the log is deleted. A writer that finds logs left by a
crashed writer commits them first. Readers read committed segments plus the open log.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from gpufleet.exporter.errors import Conflict, NotFound
from gpufleet.exporter.schema import Device, Event, Snapshot
from gpufleet.exporter.store import layout
from gpufleet.exporter.store.integrity import (
    QUARANTINE,
    SIDECAR_SUFFIX,
    VERIFIER,
    quarantine_file,
    quarantine_summary,
    remove_segment,
    sidecar,
    verify_file,
    write_sidecar,
)
from gpufleet.exporter.store.layout import TABLE_DIRS, TIERS, list_segments, list_wals, segment_name, wal_name
from gpufleet.exporter.store.reader import ReadResult, StoreReader
from gpufleet.exporter.store.wal import WalContents, WalWriter, encode_record, read_wal

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
SKIP = -2  # series code of samples that are not stored


def event_to_dict(e: Event) -> dict[str, Any]:
    d: dict[str, Any] = {"ts": round(e.ts * 1000), "kind": str(e.kind), "uuid": e.uuid}
    if e.node:
        d["node"] = e.node
    if e.code is not None:
        d["code"] = int(e.code)
    if e.detail:
        d["detail"] = e.detail
    return d


def _unstored_fields() -> frozenset[str]:
    """Fields whose labels are unbounded or pure metadata: ``_info`` series and per-process series.

    The store keeps one column per series, so per-pid / per-container series would grow without
    bound; device metadata is kept by :meth:`HistoryStore.devices` instead.
    """
    from gpufleet.exporter.catalogue import catalogue

    return frozenset(m.field for m in catalogue() if m.type == "info" or m.scope == "process")


class HistoryStore:
    """The embedded time-series history of gpufleet.

    ``HistoryStore(path)`` opens (and creates when missing) a store folder. Reading never locks;
    the first write takes an exclusive lock on the folder (a second writer process gets
    :class:`~exporter.errors.Conflict`). Retention is by data time (the newest sample written),
    per tier: raw, 1-minute and 1-hour rollups.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 raw_retention_days: float = 14.0, minute_retention_days: float = 90.0,
                 hour_retention_days: float = 730.0, segment_seconds: int = 3600,
                 fsync: bool = True, max_buffer_samples: int = 8_000_000, compaction: bool = True) -> None:
        self.path = Path(path)
        marker = self.path / "FORMAT"
        if not marker.exists():
            if not create:
                raise NotFound(f"no history store at {self.path}")
            self.path.mkdir(parents=True, exist_ok=True)
            layout.atomic_write_bytes(marker, layout.FORMAT_MARKER.encode())
        if segment_seconds <= 0 or (3600 % segment_seconds and segment_seconds % 3600):
            raise ValueError("segment_seconds must divide an hour or be a multiple of it")
        self.retention_ms = {"raw": int(raw_retention_days * DAY_MS), "1m": int(minute_retention_days * DAY_MS),
                             "1h": int(hour_retention_days * DAY_MS)}
        self.segment_ms = segment_seconds * 1000
        self.fsync = fsync
        self.max_buffer_samples = max_buffer_samples
        self.compaction = compaction
        self.reader = StoreReader(self.path)
        self._skip = _unstored_fields()
        self._has_skip = False
        self._lock_fd = -1
        self._closed = False

    # ------------------------------------------------------------------ writer state
    def _ensure_writer(self) -> None:
        if self._lock_fd >= 0:
            return
        if self._closed:
            raise Conflict(f"history store {self.path} is closed")
        fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"another process is writing to the history store {self.path}") from None
        self._lock_fd = fd
        for sub in ("wal", *TIERS, *TABLE_DIRS):
            (self.path / sub).mkdir(exist_ok=True)
        self._cleanup_tmp()
        self.seal_legacy_segments()
        self._seq = self._max_seq() + 1
        self._devices: dict[str, dict[str, Any]] = self.reader.device_records()
        self._recover()
        self._ucodes: dict[str, int] = {}
        self._scodes: dict[Any, int] = {}
        self._snames: list[str] = []
        self._unames: list[str] = []
        self._last_dev: dict[str, Device] = {}
        self._latest_ms = self.reader.span_ms()[1] or 0
        self._wal: WalWriter | None = None
        self._window_end: int | None = None
        self._reset_buffer()

    def _cleanup_tmp(self) -> None:
        for root, _d, files in os.walk(self.path):
            for f in files:
                if f.startswith(".") and ".tmp" in f:
                    os.unlink(os.path.join(root, f))

    def seal_legacy_segments(self) -> list[tuple[Path, str]]:
        """Record a digest for segments written before digests existed (after a structural check).

        Returns the (path, reason) of legacy segments that failed the check (they are quarantined).
        Orphan sidecars (of segments removed by a crash mid-deletion) are removed.
        """
        bad = []
        for sub in (*TIERS, *TABLE_DIRS):
            folder = self.path / sub
            for name in os.listdir(folder) if folder.is_dir() else []:
                p = folder / name
                if name.endswith(".parquet" + SIDECAR_SUFFIX) and not p.with_name(name[:-len(SIDECAR_SUFFIX)]).exists():
                    p.unlink(missing_ok=True)
            for seg in list_segments(folder):
                if sidecar(seg.path).exists():
                    continue
                v = verify_file(seg.path)
                if v.ok:
                    write_sidecar(seg.path, seg.path, self.fsync)
                    VERIFIER.trust(seg.path)
                else:
                    log.warning("history store %s: segment %s (written before digests) is unreadable (%s); "
                                "quarantined", self.path, seg.path.relative_to(self.path), v.reason)
                    quarantine_file(self.path, seg.path, v.reason, rows=v.rows)
                    bad.append((seg.path, v.reason))
        return bad

    def _max_seq(self) -> int:
        seq = max((s for s, _ in list_wals(self.path / "wal")), default=0)
        for sub in (*TIERS, *TABLE_DIRS):
            for seg in list_segments(self.path / sub):
                seq = max(seq, seg.hi)
        return seq

    def _reset_buffer(self) -> None:
        self._b_ts: list[np.ndarray] = []
        self._b_u: list[np.ndarray] = []
        self._b_s: list[np.ndarray] = []
        self._b_v: list[np.ndarray] = []
        self._b_events: list[dict[str, Any]] = []
        self._b_labels: list[dict[str, Any]] = []
        self._b_n = 0
        self._b_dev = False

    def _recover(self) -> None:
        """Commit logs a crashed writer left behind (tiers that already hold a log's sequence skip it)."""
        for seq, path in list_wals(self.path / "wal"):
            c = read_wal(path)
            if c is None:
                continue
            self._commit_contents(seq, c)
            if c.damaged:  # never expected: keep the log for inspection, say exactly what was lost
                log.error("history store %s: write-ahead log %s is corrupt: %s (%s); recovered what was intact "
                          "and moved the log to %s/", self.path, path.name, c.describe(), "; ".join(c.problems),
                          QUARANTINE)
                quarantine_file(self.path, path, "; ".join(c.problems), records=c.corrupt_records,
                                lost_bytes=c.corrupt_bytes + c.torn_bytes, kind="log")
                continue
            if c.torn:
                log.warning("history store %s: dropped a torn record (%d bytes) at the end of %s (%d records "
                            "recovered)", self.path, c.torn_bytes, path.name, c.records)
            path.unlink()

    def _commit_contents(self, seq: int, c: WalContents) -> None:
        from gpufleet.exporter.store.segments import Long

        ts, uc, sc, vals = c.arrays()
        nu = max(c.uuids, default=-1) + 1
        ns = max(c.series, default=-1) + 1
        unames = [c.uuids.get(i, "") for i in range(nu)]
        snames = [c.series.get(i, "") for i in range(ns)]
        for d in c.devices:
            self._devices[d["uuid"]] = d
        self._commit(seq, Long(ts, uc, sc, vals, unames, snames), c.events, c.labels, bool(c.devices))

    def _commit(self, seq: int, long: Any, events: list[dict[str, Any]], labels: list[dict[str, Any]],
                devices_changed: bool) -> None:
        from gpufleet.exporter.store.segments import (
            event_table,
            raw_table,
            rollup_table,
            write_parquet_atomic,
        )

        if devices_changed:
            self._write_devices()
        if len(long):
            tmin, tmax = int(long.ts.min()), int(long.ts.max())
            for tier, res in TIERS.items():
                folder = self.path / tier
                if any(s.covers(seq) for s in list_segments(folder)):
                    continue
                table = raw_table(long) if res == 0 else rollup_table(long, res)
                lo = tmin if res == 0 else tmin // res * res
                hi = tmax if res == 0 else tmax // res * res
                write_parquet_atomic(table, folder / segment_name(lo, hi, seq, seq), self.fsync,
                                     compression="zstd" if res == 0 else "lz4")
        for sub, rows in (("events", events), ("labels", labels)):
            if rows and not any(s.covers(seq) for s in list_segments(self.path / sub)):
                t = event_table(rows)
                tmin, tmax = int(t["ts"][0].as_py()), int(t["ts"][-1].as_py())
                write_parquet_atomic(t, self.path / sub / segment_name(tmin, tmax, seq, seq), self.fsync)

    def _write_devices(self) -> None:
        data = json.dumps(self._devices, sort_keys=True, indent=0).encode()
        layout.atomic_write_bytes(self.path / "devices.json", data, self.fsync)

    def _open_wal(self) -> None:
        self._wal = WalWriter(self.path / "wal" / wal_name(self._seq), fsync=False)
        # The log declares the full dictionaries so it decodes on its own (twice: see wal.py).
        meta: dict[str, Any] = {}
        if self._unames:
            meta["u"] = dict(enumerate(self._unames))
        if self._snames:
            meta["s"] = dict(enumerate(self._snames))
        if meta:
            rec = encode_record(0, np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0), meta)
            self._wal.append(rec + rec)

    def _roll(self) -> None:
        """Commit the open window and start a new log."""
        if self._wal is None:
            return
        from gpufleet.exporter.store.segments import Long

        if self._b_n or self._b_events or self._b_labels or self._b_dev:
            long = Long(np.concatenate(self._b_ts) if self._b_ts else np.empty(0, np.int64),
                        np.concatenate(self._b_u) if self._b_u else np.empty(0, np.int32),
                        np.concatenate(self._b_s) if self._b_s else np.empty(0, np.int32),
                        np.concatenate(self._b_v) if self._b_v else np.empty(0),
                        self._unames, self._snames)
            self._commit(self._seq, long, self._b_events, self._b_labels, self._b_dev)
        self._wal.close()
        os.unlink(self._wal.path)
        self._wal = None
        self._seq += 1
        self._reset_buffer()
        self._apply_retention()

    def _apply_retention(self) -> None:
        now = self._latest_ms
        for tier in TIERS:
            keep_ms = self.retention_ms[tier]
            for seg in list_segments(self.path / tier):
                if seg.tmax < now - keep_ms:
                    remove_segment(seg.path)
        for seg in list_segments(self.path / "events"):
            if seg.tmax < now - self.retention_ms["1h"]:
                remove_segment(seg.path)
        for tier in (*TIERS, *TABLE_DIRS):
            for p in layout.shadowed_segments(self.path / tier):
                remove_segment(p)
        if self.compaction:
            from gpufleet.exporter.store.compact import compact

            for tier in (*TIERS, "events"):
                compact(self.path / tier, tier, now, self.fsync)

    def _before_write(self, ts_ms: int) -> None:
        self._ensure_writer()
        if self._window_end is not None and (ts_ms >= self._window_end or self._b_n >= self.max_buffer_samples):
            self._roll()
            self._window_end = None
        if self._wal is None:
            self._open_wal()
        if self._window_end is None:
            self._window_end = (ts_ms // self.segment_ms + 1) * self.segment_ms

    def _codes(self, keys: list[Any], table: dict[Any, int], names: list[str], new: dict[int, str],
               render: Any, skip: frozenset[str] = frozenset()) -> np.ndarray:
        """Codes of ``keys``, registering new ones; keys of fields in ``skip`` get SKIP."""
        get = table.get
        out = [get(k, -1) for k in keys]
        if -1 in out:
            for i, k in enumerate(keys):
                if out[i] == -1:
                    c = table.get(k)
                    if c is None:
                        if (k if isinstance(k, str) else k[0]) in skip:
                            c = table[k] = SKIP
                            self._has_skip = True
                        else:
                            c = table[k] = len(names)
                            names.append(render(k))
                            new[c] = names[c]
                    out[i] = c
        return np.fromiter(out, np.int32, len(out))

    # ------------------------------------------------------------------ write API
    def write(self, snapshot: Snapshot) -> None:
        """Store one collection cycle: samples (with labels), events, device metadata and up state.

        ``_info`` and per-process samples are not stored (see :func:`_unstored_fields`).
        """
        ts_ms = round(snapshot.ts * 1000)
        self._before_write(ts_ms)
        samples = snapshot.samples
        ukeys = [s.uuid for s in samples]
        skeys = [(s.field, s.labels) if s.labels else s.field for s in samples]
        vals = [s.value for s in samples]
        if snapshot.up:
            ukeys += list(snapshot.up)
            skeys += ["up"] * len(snapshot.up)
            vals += [float(v) for v in snapshot.up.values()]
        new_u: dict[int, str] = {}
        new_s: dict[int, str] = {}
        uc = self._codes(ukeys, self._ucodes, self._unames, new_u, str)
        sc = self._codes(skeys, self._scodes, self._snames, new_s,
                         lambda k: k if isinstance(k, str) else layout.series_name(k[0], k[1]), self._skip)
        values = np.fromiter(vals, np.float64, len(vals))
        if self._has_skip and (sc == SKIP).any():
            keep = sc != SKIP
            uc, sc, values = uc[keep], sc[keep], values[keep]
        meta: dict[str, Any] = {}
        if new_u:
            meta["u"] = new_u
        if new_s:
            meta["s"] = new_s
        if snapshot.events:
            evs = [event_to_dict(e) for e in snapshot.events]
            meta["ev"] = evs
            self._b_events += evs
        devs = []
        for d in snapshot.devices:
            if self._last_dev.get(d.uuid) != d:
                self._last_dev[d.uuid] = d
                rec = dataclasses.asdict(d)
                old = self._devices.get(d.uuid)
                rec["first_seen"] = old.get("first_seen", ts_ms) if old else ts_ms
                if old is None or any(old.get(k) != v for k, v in rec.items()):
                    devs.append(rec)
                    self._devices[d.uuid] = rec
        if devs:
            meta["dev"] = devs
            self._b_dev = True
        assert self._wal is not None
        frame = encode_record(ts_ms, uc, sc, values, meta or None)
        if new_u or new_s:  # new names are declared twice, so one damaged record cannot orphan later ones
            names = {k: v for k, v in (("u", new_u), ("s", new_s)) if v}
            frame = encode_record(0, np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0), names) + frame
        self._wal.append(frame)  # one write(2)
        if len(values):
            self._b_ts.append(np.full(len(values), ts_ms, np.int64))
            self._b_u.append(uc)
            self._b_s.append(sc)
            self._b_v.append(values)
            self._b_n += len(values)
        if ts_ms > self._latest_ms:
            self._latest_ms = ts_ms

    def write_labels(self, events: Iterable[Event]) -> None:
        """Store ground-truth failure labels, apart from telemetry (never exported as metrics)."""
        rows = [event_to_dict(e) for e in events]
        if not rows:
            return
        self._before_write(max(r["ts"] for r in rows) if self._window_end is None else 0)
        assert self._wal is not None
        self._wal.append(encode_record(0, np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0),
                                       {"lab": rows}))
        self._b_labels += rows

    def flush(self) -> None:
        """Make everything written so far durable (fsync the log); it is already visible to readers."""
        if self._wal is not None:
            self._wal.sync()

    def commit(self) -> None:
        """Commit the open window to segments now (also done at window boundaries and on close).

        Takes the writer lock first, so it also recovers logs a crashed writer left behind.
        """
        self._ensure_writer()
        if self._wal is not None:
            self._roll()
            self._window_end = None

    def close(self) -> None:
        """Commit the open window and release the writer lock. Safe to call twice."""
        if self._lock_fd >= 0:
            try:
                self.commit()
            finally:
                os.close(self._lock_fd)
                self._lock_fd = -1
        self._closed = True

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ read API
    def read(self, fields: Sequence[str], uuids: Sequence[str] | None = None, since: float | None = None,
             until: float | None = None, step: float | None = None, agg: str = "mean",
             resolution: str = "auto") -> ReadResult:
        """Samples of ``fields`` as columns, one row per (ts, uuid); see :class:`ReadResult`.

        ``since``/``until`` are unix seconds (inclusive / exclusive). ``step`` (seconds) buckets
        rows into ``[t, t + step)`` and aggregates with ``agg`` (mean, min, max, last).
        ``resolution`` is ``raw``, ``1m``, ``1h`` or ``auto`` (the coarsest tier no coarser than
        ``step``; without a step, the finest tier that still holds ``since``).
        """
        return self.reader.read(fields, uuids=uuids, since=since, until=until, step=step, agg=agg,
                                resolution=resolution)

    def events(self, since: float | None = None, until: float | None = None, kinds: Sequence[str] | None = None,
               uuids: Sequence[str] | None = None) -> list[Event]:
        """Events (XIDs, GPU lost, job start/end...) in [since, until), oldest first."""
        return self.reader.events("events", since, until, kinds, uuids)

    def labels(self, since: float | None = None, until: float | None = None) -> list[Event]:
        """Ground-truth failure labels in [since, until), oldest first."""
        return self.reader.events("labels", since, until, None, None)

    def devices(self) -> list[Device]:
        """Every device ever written, with its latest metadata."""
        return self.reader.devices()

    def span(self) -> tuple[float | None, float | None]:
        """(first, last) sample timestamp in unix seconds over all tiers; (None, None) when empty."""
        lo, hi = self.reader.span_ms()
        return (None if lo is None else lo / 1000, None if hi is None else hi / 1000)

    def quarantine(self) -> dict[str, int]:
        """Damaged files moved to ``quarantine/``: ``files``, ``rows_lost`` (segments), ``records_lost`` (logs)."""
        return quarantine_summary(self.path)

    def size_bytes(self) -> int:
        """Bytes on disk."""
        return layout.dir_size(self.path)

    def fields(self) -> list[str]:
        """Series names present in the store (``field`` or ``field{label=value}``)."""
        return self.reader.series_names()


def wait_for_lock_release(path: Path, timeout: float = 10.0) -> bool:
    """True once no process holds the writer lock of a store (used by tests and tools)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        except BlockingIOError:
            time.sleep(0.05)
        finally:
            os.close(fd)
    return False
