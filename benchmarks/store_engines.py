"""Compare candidate engines for the history store against its requirements (one process, one core).

Candidates, each made durable per collection cycle (kill -9 loses at most the last cycle):
  sqlite   SQLite in WAL mode, long table (ts, uuid, series, value), one transaction per snapshot
  duckdb   DuckDB, long table, one Arrow insert (auto-commit) per snapshot
  parquet  gpufleet's HistoryStore: write-ahead log per snapshot + hourly Parquet segments (wide)

Figures: ingest samples/s, bytes per GPU-day at 10 s, and read rate of 1-minute data (10 fields)
into numpy, extrapolated to the 30 days x 1,000 GPUs x 10 fields target (432 M values).

    python benchmarks/store_engines.py [--gpus 64] [--hours 2]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.exporter.store import HistoryStore

from benchmarks.store_common import FIELD_NAMES, minute_table, snapshots

TARGET_VALUES = 30 * 1440 * 1000 * 10
READ_DAYS, READ_GPUS = 2, 200  # 5.76 M values of 1-minute data per candidate read


def _size(path: Path) -> int:
    total = 0
    for root, _d, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def _long(snaps):  # type: ignore[no-untyped-def]
    """Per snapshot: (ts, uuid list, series list, values) as the candidates ingest it."""
    return [(sn.ts, [s.uuid for s in sn.samples], [s.field for s in sn.samples], [s.value for s in sn.samples])
            for sn in snaps]


def bench_sqlite(snaps, folder: Path, gpus: int, hours: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    db = sqlite3.connect(folder / "h.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE s (ts INTEGER, uuid INTEGER, series INTEGER, value REAL)")
    db.execute("CREATE INDEX s_ts ON s (ts)")
    uid: dict[str, int] = {}
    sid: dict[str, int] = {}
    n = 0
    t, c = time.perf_counter(), time.process_time()
    for sn in snaps:
        ts = int(sn.ts * 1000)
        rows = [(ts, uid.setdefault(s.uuid, len(uid)), sid.setdefault(s.field, len(sid)), s.value)
                for s in sn.samples]
        db.execute("BEGIN")
        db.executemany("INSERT INTO s VALUES (?,?,?,?)", rows)
        db.execute("COMMIT")
        n += len(rows)
    ingest, ingest_cpu = n / (time.perf_counter() - t), n / (time.process_time() - c)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = _size(folder)
    # Read: bulk-loaded 1-minute data (long table), 10 fields into numpy, pivoted to wide.
    db.execute("CREATE TABLE m (ts INTEGER, uuid INTEGER, series INTEGER, mean REAL)")
    db.execute("CREATE INDEX m_ts ON m (ts)")
    for day in range(READ_DAYS):
        t = minute_table(day, READ_GPUS, aggs=False)
        ts, uu = t["ts"].to_numpy(), t["uuid"].chunk(0).indices.to_numpy()
        db.execute("BEGIN")
        for j, f in enumerate(FIELD_NAMES[:10]):
            db.executemany("INSERT INTO m VALUES (?,?,?,?)",
                           zip(ts.tolist(), uu.tolist(), [j] * len(ts), t[f].to_numpy().tolist(), strict=True))
        db.execute("COMMIT")
    t0, c0 = time.perf_counter(), time.process_time()
    rows = db.execute("SELECT ts, uuid, series, mean FROM m WHERE ts >= 0").fetchall()
    arr = np.array(rows, dtype=np.float64)
    _wide(arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64), arr[:, 3])
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
    db.close()
    return {"ingest": ingest, "ingest_cpu": ingest_cpu, "read_cpu": read_cpu, "size": size, "read_values": len(rows), "read_s": read_s}


def bench_duckdb(snaps, folder: Path, gpus: int, hours: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import duckdb
    import pyarrow as pa

    db = duckdb.connect(str(folder / "h.duckdb"))
    db.execute("CREATE TABLE s (ts BIGINT, uuid VARCHAR, series VARCHAR, value DOUBLE)")
    n = 0
    t, c = time.perf_counter(), time.process_time()
    for sn in snaps:
        ts = int(sn.ts * 1000)
        batch = pa.table({"ts": pa.array([ts] * len(sn.samples), pa.int64()),
                          "uuid": [s.uuid for s in sn.samples], "series": [s.field for s in sn.samples],
                          "value": pa.array([s.value for s in sn.samples], pa.float64())})
        db.register("batch", batch)
        db.execute("INSERT INTO s SELECT * FROM batch")
        db.unregister("batch")
        n += len(sn.samples)
    ingest, ingest_cpu = n / (time.perf_counter() - t), n / (time.process_time() - c)
    db.execute("CHECKPOINT")
    size = _size(folder)
    # Read: bulk-loaded 1-minute data in its best layout for this read (wide table), into numpy.
    for day in range(READ_DAYS):
        t = minute_table(day, READ_GPUS, aggs=False)
        t = t.set_column(1, "uuid", t["uuid"].cast(pa.string()))
        db.register("day", t)
        db.execute("CREATE TABLE IF NOT EXISTS m AS SELECT * FROM day LIMIT 0")
        db.execute("INSERT INTO m SELECT * FROM day")
        db.unregister("day")
    t0, c0 = time.perf_counter(), time.process_time()
    tbl = db.sql("SELECT * EXCLUDE (n) FROM m WHERE ts >= 0 ORDER BY ts, uuid").to_arrow_table()
    {c: tbl[c].to_numpy() for c in tbl.column_names}
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
    db.close()
    return {"ingest": ingest, "ingest_cpu": ingest_cpu, "read_cpu": read_cpu, "size": size, "read_values": tbl.num_rows * 10, "read_s": read_s}


def bench_parquet(snaps, folder: Path, gpus: int, hours: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    n = sum(len(sn.samples) for sn in snaps)
    t, c = time.perf_counter(), time.process_time()
    with HistoryStore(folder / "store") as st:
        for sn in snaps:
            sn.up = {}  # same samples as the other candidates
            st.write(sn)
    ingest, ingest_cpu = n / (time.perf_counter() - t), n / (time.process_time() - c)
    size = _size(folder)
    # Read: bulk-loaded 1-minute rollup segments (one file per day), 10 fields into numpy.
    from gpufleet.exporter.store.layout import segment_name
    from gpufleet.exporter.store.segments import write_parquet_atomic

    rd = folder / "read"
    HistoryStore(rd)
    (rd / "1m").mkdir()
    for day in range(READ_DAYS):
        t = minute_table(day, READ_GPUS)
        lo, hi = t["ts"][0].as_py(), t["ts"][-1].as_py()
        write_parquet_atomic(t, rd / "1m" / segment_name(lo, hi, day + 1, day + 1), fsync=False)
    t0, c0 = time.perf_counter(), time.process_time()
    r = HistoryStore(rd).read(FIELD_NAMES[:10], step=60, resolution="1m")
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"ingest": ingest, "ingest_cpu": ingest_cpu, "read_cpu": read_cpu, "size": size, "read_values": len(r) * 10, "read_s": read_s}


def _wide(ts, uu, se, v):  # type: ignore[no-untyped-def]
    key = ts * 100000 + uu
    rows, inv = np.unique(key, return_inverse=True)
    cols = np.unique(se)
    mat = np.full((len(cols), len(rows)), np.nan)
    mat[np.searchsorted(cols, se), inv] = v
    return rows, mat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--only", default="sqlite,duckdb,parquet")
    args = ap.parse_args()
    steps = int(args.hours * 360)
    snaps = snapshots(args.gpus, steps, 10.0)
    n = sum(len(s.samples) for s in snaps)
    gpu_days = args.gpus * args.hours / 24
    print(f"workload: {args.gpus} GPUs x {args.hours} h at 10 s, 40 fields = {n:,} samples, "
          f"{len(snaps):,} snapshots (one per node per cycle)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall figures suffer; CPU figures less)")
    print(f"{'engine':8} {'ingest/s wall':>14} {'ingest/s CPU':>13} {'MB/GPU-day@10s':>15} {'read values/s CPU':>18} "
          f"{'est. 30dx1000x10 read (CPU s / wall s)':>40}")
    for name in args.only.split(","):
        fn = {"sqlite": bench_sqlite, "duckdb": bench_duckdb, "parquet": bench_parquet}[name]
        with tempfile.TemporaryDirectory() as tmp:
            r = fn(snaps, Path(tmp), args.gpus, args.hours)
        rate_cpu = r["read_values"] / max(r["read_cpu"], 1e-9)
        rate = r["read_values"] / r["read_s"]
        print(f"{name:8} {r['ingest']:14,.0f} {r['ingest_cpu']:13,.0f} {r['size'] / gpu_days / 1e6:15.2f} "
              f"{rate_cpu:18,.0f} {TARGET_VALUES / rate_cpu:30.1f} / {TARGET_VALUES / rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
