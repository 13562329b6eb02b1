"""Crash safety and concurrent readers, with a real writer process killed by SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from gpufleet.exporter.store import HistoryStore
from gpufleet.exporter.store.layout import list_segments, list_wals

from tests.servers import ROOT, wait_until
from tests.store.helpers import T0, devices, snapshot

WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from gpufleet.exporter.store import HistoryStore
    from tests.store.helpers import devices, snapshot
    s = HistoryStore(sys.argv[1], segment_seconds=60)
    devs = devices()
    k = int(sys.argv[3])
    while True:
        s.write(snapshot(k, devs))
        print(k, flush=True)  # acknowledged: this cycle is stored
        k += 1
        time.sleep(0.005)
""")


def _start_writer(store: Path, first: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(store), str(ROOT), str(first)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _acked_after_kill(proc: subprocess.Popen[str], at_least: int, reader: HistoryStore | None = None) -> int:
    """Read acknowledgements until ``at_least`` arrived, SIGKILL the writer, return the last ack."""
    assert proc.stdout is not None
    last = -1
    counts = []
    while last < at_least:
        line = proc.stdout.readline()
        assert line, "writer exited early"
        last = int(line)
        if reader is not None and last % 40 == 0:
            counts.append(len(reader.read(["power_usage"], resolution="raw")))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    rest = proc.stdout.read().split()
    if rest:
        last = int(rest[-1])
    if reader is not None:  # concurrent reads saw a growing history, never a broken one
        assert counts == sorted(counts) and counts[-1] > 0
    return last


@pytest.mark.slow
def test_sigkill_loses_at_most_the_last_cycle_and_never_corrupts(tmp_path: Path) -> None:
    store = tmp_path / "h"
    HistoryStore(store)  # created by this process, written by the child
    reader = HistoryStore(store)
    last = _acked_after_kill(_start_writer(store, 0), 230, reader)
    r = reader.read(["power_usage"], resolution="raw")
    cycles = np.unique(np.round((r.ts - T0) / 10).astype(int))
    # every acknowledged cycle is there; at most the one in flight beyond it
    assert cycles[0] == 0 and set(range(last + 1)) <= set(cycles) and cycles[-1] <= last + 1
    assert len(r) == 4 * len(cycles)
    assert list_wals(store / "wal")  # the open window was in the log
    # a new writer recovers the log, then goes on; nothing is duplicated
    nxt = int(cycles[-1]) + 1
    last2 = _acked_after_kill(_start_writer(store, nxt), nxt + 50)
    with HistoryStore(store) as s:
        s.write(snapshot(last2 + 1, devices()))
        r = s.read(["power_usage"], resolution="raw")
        keys = r.ts_ms * 16 + r.codes
        assert len(np.unique(keys)) == len(keys)
        assert set(range(last2 + 2)) <= set(np.round((r.ts - T0) / 10).astype(int))
        m = s.read(["power_usage"], step=60, resolution="1m")
        assert len(m) == 4 * len(np.unique(r.ts_ms // 60000))
    assert not list_wals(store / "wal")


def test_torn_log_tail_is_dropped(tmp_path: Path) -> None:
    store = tmp_path / "h"
    s = HistoryStore(store)
    for k in range(5):
        s.write(snapshot(k, devices()))
    (_seq, wal), = list_wals(store / "wal")
    whole = wal.read_bytes()
    shutil.copy(wal, tmp_path / "copy.wal")
    os.close(s._lock_fd)  # simulate the writer dying without closing: drop its lock
    s._lock_fd = -1
    s._closed = True
    # a torn last record (the writer was killed in the middle of write(2))
    wal.write_bytes(whole + whole[-200:-50])
    reader = HistoryStore(store)
    assert len(reader.read(["power_usage"], resolution="raw")) == 20
    with HistoryStore(store) as w:  # recovery commits the intact records
        assert len(w.read(["power_usage"], resolution="raw")) == 20
        w.write(snapshot(5, devices()))
    assert len(HistoryStore(store).read(["power_usage"], resolution="raw")) == 24


def test_log_left_after_commit_is_not_read_twice(tmp_path: Path) -> None:
    """A crash between committing a window and deleting its log leaves both: read once."""
    store = tmp_path / "h"
    s = HistoryStore(store)
    for k in range(30):
        s.write(snapshot(k, devices()))
    (_seq, wal), = list_wals(store / "wal")
    saved = wal.read_bytes()
    s.close()
    wal.write_bytes(saved)
    assert len(HistoryStore(store).read(["power_usage"], resolution="raw")) == 120
    assert len(HistoryStore(store).read(["power_usage"], resolution="1m")) == 4 * 6
    with HistoryStore(store) as w:
        w.write(snapshot(30, devices()))
    assert len(HistoryStore(store).read(["power_usage"], resolution="raw")) == 124
    wait_until(lambda: not list_wals(store / "wal"), 5, "log removed")


COMPACTING_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from gpufleet.exporter.store import HistoryStore
    from tests.store.helpers import devices, snapshot
    devs = devices()
    with HistoryStore(sys.argv[1], fsync=False) as s:
        for k in range(3 * 144):  # three days at 10-minute cycles: hourly commits, daily compaction
            s.write(snapshot(k, devs, 600.0))
            time.sleep(0.002)
""")


@pytest.mark.slow
def test_readers_see_each_row_once_while_the_writer_commits_and_compacts(tmp_path: Path) -> None:
    store = tmp_path / "h"
    HistoryStore(store)
    proc = subprocess.Popen([sys.executable, "-c", COMPACTING_WRITER, str(store), str(ROOT)], cwd=ROOT)
    reader = HistoryStore(store)
    seen = [0]
    try:
        while proc.poll() is None:
            for res in ("raw", "1m"):
                r = reader.read(["power_usage"], resolution=res)
                keys = r.ts_ms * 16 + r.codes
                assert len(np.unique(keys)) == len(keys)  # never a row twice, never a torn file
            assert len(r) >= seen[-1]  # never a row lost
            seen.append(len(r))
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert len(seen) > 3
    assert len(reader.read(["power_usage"], resolution="raw")) == 4 * 3 * 144
    assert any(s.tmax - s.tmin > 8 * 3_600_000 for s in list_segments(store / "raw"))  # compaction ran
