"""Ingest benchmark of the history store on one core, and its size per GPU-day.

Snapshots (one per node of 8 GPUs per cycle, 40 NVML-like quantised fields + up) are built first;
the timed part is ``HistoryStore.write`` for every snapshot plus ``close()`` (write-ahead log,
window commits to raw / 1-minute / 1-hour Parquet segments, retention and compaction). Arrow's
thread pools are set to one thread, so the figure is one core's.

    python benchmarks/store_ingest.py [--gpus 256] [--hours 3] [--interval 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.exporter.store import HistoryStore
from gpufleet.exporter.store.layout import TIERS, dir_size

from benchmarks.store_common import snapshots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=256)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--fsync", action="store_true", help="fsync every committed segment (the daemon's default)")
    args = ap.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    steps = int(args.hours * 3600 / args.interval)
    t = time.perf_counter()
    snaps = snapshots(args.gpus, steps, args.interval)
    n = sum(len(s.samples) + len(s.up) for s in snaps)
    print(f"{args.gpus} GPUs x {args.hours:g} h at {args.interval:g} s: {n:,} samples in {len(snaps):,} snapshots "
          f"(built in {time.perf_counter() - t:.0f} s)")
    root = Path(tempfile.mkdtemp(prefix="store-ingest-"))
    try:
        load = os.getloadavg()[0]
        w, c = time.perf_counter(), time.process_time()
        with HistoryStore(root / "h", fsync=args.fsync) as s:
            for sn in snaps:
                s.write(sn)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        print(f"ingest: {n / wall:,.0f} samples/s wall, {n / cpu:,.0f} samples/s per CPU-second "
              f"(load average {load:.1f})")
        gpu_days = args.gpus * args.hours / 24
        total = dir_size(root / "h")
        parts = ", ".join(f"{tier} {dir_size(root / 'h' / tier) / gpu_days / 1e6:.2f}" for tier in TIERS)
        print(f"size: {total / gpu_days / 1e6:.2f} MB per GPU-day at {args.interval:g} s ({parts} MB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
