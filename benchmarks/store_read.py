"""Read benchmark of the history store at its target scale.

30 days x 1,000 GPUs x 10 fields at 1-minute resolution (432 M values) are laid out as the writer
leaves them after compaction (one 1-minute rollup file per day, lz4), then read back with
``HistoryStore.read(fields, since, until, step=60)`` into numpy and converted to pandas.
Only the ``:mean`` columns and ``n`` are generated (a read of the mean projects exactly those
columns; the min/max/last columns would only take disk space here).

    python benchmarks/store_read.py [--days 30] [--gpus 1000] [--fields 10] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.exporter.store import HistoryStore
from gpufleet.exporter.store.layout import segment_name
from gpufleet.exporter.store.segments import write_parquet_atomic

from benchmarks.store_common import FIELD_NAMES, QUANTUM, SCALE, devices

DAY_MS = 86_400_000


def day_table(day: int, t0_ms: int, n_gpus: int, n_fields: int, rng: np.random.Generator) -> pa.Table:
    rows = 1440 * n_gpus
    ts = t0_ms + day * DAY_MS + np.repeat(np.arange(1440, dtype=np.int64) * 60_000, n_gpus)
    codes = np.tile(np.arange(n_gpus, dtype=np.int32), 1440)
    names = sorted(d.uuid for d in devices(n_gpus))
    cols = {"ts": pa.array(ts), "uuid": pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)),
            "n": pa.array(np.full(rows, 6, np.int32))}
    for j in range(n_fields):
        # a smooth per-GPU daily profile plus quantised noise, as 1-minute means of NVML readings look
        prof = 0.5 + 0.3 * np.sin(np.linspace(0, 2 * np.pi, 1440))[:, None] * rng.uniform(0.5, 1, n_gpus)[None, :]
        v = np.clip(prof + rng.normal(0, 0.05, (1440, n_gpus)), 0, 1).ravel() * SCALE[j]
        cols[f"{FIELD_NAMES[j]}:mean"] = pa.array(np.round(v / QUANTUM[j] * 6) / 6 * QUANTUM[j])
    return pa.table(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--fields", type=int, default=10)
    ap.add_argument("--dir", type=Path, default=None, help="keep the generated store here (default: a temp dir)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="store-read-"))
    path = root / "store"
    t0_ms = 1_750_000_000_000 // DAY_MS * DAY_MS
    rng = np.random.default_rng(0)
    try:
        if not (path / "1m").exists() or len(os.listdir(path / "1m")) != args.days:
            shutil.rmtree(path, ignore_errors=True)
            HistoryStore(path)
            (path / "1m").mkdir()
            t = time.perf_counter()
            for day in range(args.days):
                tbl = day_table(day, t0_ms, args.gpus, args.fields, rng)
                lo, hi = int(tbl["ts"][0].as_py()), int(tbl["ts"][-1].as_py())
                write_parquet_atomic(tbl, path / "1m" / segment_name(lo, hi, day + 1, day + 1), fsync=False,
                                     compression="lz4")
            print(f"generated {args.days} days x {args.gpus} GPUs x {args.fields} fields of 1-minute data "
                  f"in {time.perf_counter() - t:.0f} s")
        size = sum(p.stat().st_size for p in (path / "1m").iterdir())
        values = args.days * 1440 * args.gpus * args.fields
        print(f"on disk: {size / 1e9:.2f} GB ({size / (args.days * args.gpus) / 1e3:.0f} kB per GPU-day for "
              f"{args.fields} mean columns)")
        store = HistoryStore(path, create=False)
        fields = FIELD_NAMES[:args.fields]
        for attempt in range(2):
            load = os.getloadavg()[0]
            w, c = time.perf_counter(), time.process_time()
            r = store.read(fields, since=t0_ms / 1000, until=(t0_ms + args.days * DAY_MS) / 1000, step=60)
            wall, cpu = time.perf_counter() - w, time.process_time() - c
            assert len(r) * args.fields == values and r.resolution == "1m"
            w = time.perf_counter()
            df = r.to_pandas()
            pd_wall = time.perf_counter() - w
            print(f"read {attempt + 1}: {values / 1e6:.0f} M values into numpy in {wall:.1f} s wall / {cpu:.1f} s CPU "
                  f"({values / wall / 1e6:.0f} M values/s); + to_pandas {pd_wall:.1f} s; "
                  f"frame {df.shape}, load average {load:.1f}", flush=True)
            del r, df
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
