"""Corruption of the write-ahead log and of Parquet segments: detected, counted, quarantined, never silent."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gpufleet.exporter.store import HistoryStore
from gpufleet.exporter.store.layout import list_segments, list_wals
from gpufleet.exporter.store.wal import MAGIC, decode

from tests.servers import ROOT
from tests.store.helpers import T0, devices, snapshot

GPUS = 4


def _abandon(s: HistoryStore) -> None:
    """Simulate the writer dying without closing: drop its lock."""
    os.close(s._lock_fd)
    s._lock_fd = -1
    s._closed = True


def _open_log(tmp_path: Path, cycles: int = 10) -> tuple[Path, Path, list[int]]:
    store = tmp_path / "h"
    s = HistoryStore(store)
    for k in range(cycles):
        s.write(snapshot(k, devices(GPUS)))
    _abandon(s)
    (_seq, wal), = list_wals(store / "wal")
    data = wal.read_bytes()
    starts = [i for i in range(len(data)) if data.startswith(MAGIC, i)]
    return store, wal, starts


def _cycles(store: Path) -> list[int]:
    r = HistoryStore(store).read(["power_usage"], resolution="raw")
    return sorted(set(np.round((r.ts - T0) / 10).astype(int).tolist()))


def _flip(path: Path, at: int, n: int = 8) -> None:
    b = bytearray(path.read_bytes())
    for i in range(at, at + n):
        b[i] ^= 0xFF
    path.write_bytes(bytes(b))


def test_corrupt_record_in_the_middle_is_skipped_counted_and_quarantined(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    store, wal, starts = _open_log(tmp_path)
    # records: [dict, data k=0], then one per cycle: record index 1 + k is cycle k (k >= 1)
    assert len(starts) == 11
    _flip(wal, starts[6] + 40)  # cycle 5's payload
    assert _cycles(store) == [0, 1, 2, 3, 4, 6, 7, 8, 9]  # readers see everything after it
    c = decode(wal.read_bytes())
    assert (c.records, c.corrupt_records, c.torn) == (10, 1, False)
    assert c.corrupt_bytes == starts[7] - starts[6]
    with caplog.at_level(logging.WARNING), HistoryStore(store) as w:
        w.commit()
    assert "1 corrupt records" in caplog.text and "torn" not in caplog.text
    assert _cycles(store) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert not list_wals(store / "wal")
    q = store / "quarantine" / "wal" / wal.name
    assert q.exists()  # kept, never deleted
    why = json.loads((q.parent / (q.name + ".why.json")).read_text())
    assert why["records_lost"] == 1 and why["bytes_lost"] == starts[7] - starts[6]
    assert HistoryStore(store).quarantine() == {"files": 1, "rows_lost": 0, "records_lost": 1}


def test_corrupt_first_record_keeps_the_rest_of_the_log(tmp_path: Path) -> None:
    store, wal, starts = _open_log(tmp_path)
    _flip(wal, starts[0] + 20)  # the first record declares every name: its second copy survives
    assert _cycles(store) == list(range(10))
    _flip(wal, starts[3] + 4)  # damage the header (length field) of cycle 2's record too
    c = decode(wal.read_bytes())
    assert (c.corrupt_records, c.records, c.unnamed_samples) == (2, 9, 0)
    assert _cycles(store) == [0, 1, *range(3, 10)]  # resynchronised on the next valid frame


def test_torn_tail_is_dropped_and_the_log_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, wal, starts = _open_log(tmp_path)
    data = wal.read_bytes()
    wal.write_bytes(data[:-30])  # the writer died inside write(2) of cycle 9
    c = decode(wal.read_bytes())
    assert c.torn and c.corrupt_records == 0 and c.torn_bytes == len(data) - 30 - starts[-1]
    with caplog.at_level(logging.WARNING), HistoryStore(store) as w:
        w.commit()
    assert "torn record" in caplog.text
    assert _cycles(store) == list(range(9))
    assert not (store / "quarantine").exists()


def _committed(tmp_path: Path) -> Path:
    store = tmp_path / "h"
    with HistoryStore(store, segment_seconds=60, compaction=False) as s:
        for k in range(30):  # five 1-minute windows
            s.write(snapshot(k, devices(GPUS)))
    return store


def _damage(seg: Path, how: str) -> None:
    size = seg.stat().st_size
    if how == "flip":
        b = bytearray(seg.read_bytes())
        mid = size // 2
        b[mid:mid + 64] = bytes(x ^ 0x5A for x in b[mid:mid + 64])
        seg.write_bytes(bytes(b))
    elif how == "truncate":
        os.truncate(seg, size // 2)
    else:  # footer
        b = bytearray(seg.read_bytes())
        b[-12:-4] = b"\0" * 8
        seg.write_bytes(bytes(b))


@pytest.mark.parametrize("how", ["flip", "truncate", "footer"])
def test_damaged_segment_is_quarantined_and_the_others_still_read(tmp_path: Path, how: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    store = _committed(tmp_path)
    segs = list_segments(store / "raw")
    assert len(segs) >= 3
    bad = segs[1]
    good_before = HistoryStore(store).read(["power_usage"], resolution="raw")
    lost = good_before.ts_ms[(good_before.ts_ms >= bad.tmin) & (good_before.ts_ms <= bad.tmax)]
    _damage(bad.path, how)
    with caplog.at_level(logging.WARNING):
        r = HistoryStore(store).read(["power_usage"], resolution="raw")
    assert bad.path.name in caplog.text and "damaged" in caplog.text
    assert len(r) == len(good_before) - len(lost)
    assert not np.isin(r.ts_ms, lost).any()
    keep = ~np.isin(good_before.ts_ms, lost)
    np.testing.assert_array_equal(r.columns["power_usage"], good_before.columns["power_usage"][keep])
    assert (store / "quarantine" / "raw" / bad.path.name).exists() and not bad.path.exists()
    q = HistoryStore(store).quarantine()
    assert q["files"] == 1 and q["rows_lost"] == len(lost)
    assert len(HistoryStore(store).read(["power_usage"], resolution="1m")) > 0  # other tiers unaffected


def test_legacy_segment_without_digest_is_checked_and_sealed(tmp_path: Path) -> None:
    store = _committed(tmp_path)
    segs = list_segments(store / "raw")
    for s in segs:
        (s.path.parent / (s.path.name + ".sha256")).unlink()
    _damage(segs[0].path, "truncate")
    r = HistoryStore(store).read(["power_usage"], resolution="raw")
    assert len(r) > 0 and not segs[0].path.exists()
    with HistoryStore(store) as w:  # the writer records digests for the sound ones
        w.commit()
    assert all((s.path.parent / (s.path.name + ".sha256")).exists() for s in segs[1:])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("gpufleet")
    return subprocess.run([str(exe), "history", "check", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_history_check_and_repair(tmp_path: Path) -> None:
    store = _committed(tmp_path)
    p = _cli("--store", str(store))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 damaged" in p.stdout
    bad = list_segments(store / "1m")[2]
    _damage(bad.path, "flip")
    s = HistoryStore(store)
    for k in range(30, 35):
        s.write(snapshot(k, devices(GPUS)))
    _abandon(s)
    (_seq, wal), = list_wals(store / "wal")
    data = wal.read_bytes()
    starts = [i for i in range(len(data)) if data.startswith(MAGIC, i)]
    _flip(wal, starts[3] + 30)
    p = _cli("--store", str(store))
    assert p.returncode == 3, p.stdout + p.stderr  # the data-error code
    assert f"DAMAGED  1m/{bad.path.name}" in p.stdout and "SHA-256" in p.stdout
    assert f"DAMAGED  wal/{wal.name}" in p.stdout and "1 corrupt records" in p.stdout
    assert "Traceback" not in p.stderr
    assert bad.path.exists() and wal.exists()  # checking changes nothing
    p = _cli("--store", str(store), "--repair")
    assert p.returncode == 3 and "repaired" in p.stdout
    assert (store / "quarantine" / "1m" / bad.path.name).exists()
    assert (store / "quarantine" / "wal" / wal.name).exists()
    p = _cli("--store", str(store))
    assert p.returncode == 0 and "0 damaged" in p.stdout
    assert len(_cycles(store)) == 34  # 35 cycles written, one log record lost
