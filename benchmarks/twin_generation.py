"""How fast the twin generates history, and how close it is to the real A100 fleet.

Run: python benchmarks/twin_generation.py [--nodes 16] [--days 14] [--store]

Prints the twin alone (snapshots built, nothing stored) and, with --store, the twin writing into the
embedded history store: wall seconds, CPU seconds (the machine may be shared: CPU time is the
figure that does not depend on other load), samples per second. Then the KS distance per metric
between an A100-only twin and AcmeTrace's Seren CDFs for seeds 0-4 (when ../shared/data exists).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.simulator.calibration import ks_report, sample_fleet
from gpufleet.simulator.twin import Twin, TwinConfig

ACME = Path(__file__).resolve().parents[2] / "shared" / "data" / "acme-trace-cdfs" / "cdf_csv"


def generate(nodes: int, days: float, store: bool) -> None:
    twin = Twin(TwinConfig(nodes=nodes, seed=7, fields="history", job_events=True))
    tmp = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    hs = None
    if store:
        from gpufleet.exporter.store import HistoryStore
        hs = HistoryStore(tmp / "store", raw_retention_days=days + 1, fsync=False)
    w0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for snap in twin.run(1_700_000_000.0, days * 86400, 60):
        n += len(snap.samples)
        if hs is not None:
            hs.write(snap)
    if hs is not None:
        hs.write_labels(twin.labels)
        hs.close()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    what = "twin + history store" if store else "twin alone"
    print(f"{what}: {nodes} nodes x 8 GPUs x {days:g} days at 60 s: {n:,} samples, "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU, {n / cpu:,.0f} samples per CPU-second; "
          f"{len(twin.labels)} failure labels, {len(twin.jobs):,} jobs")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--store", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    generate(a.nodes, a.days, a.store)
    if ACME.exists():
        print("KS distance to AcmeTrace Seren (A100), 16 nodes x 8 GPUs x 4 days after a 12 h warm-up:")
        for seed in range(a.seeds):
            ks = ks_report(ACME, sample_fleet(nodes=16, days=4, seed=seed))
            print(f"  seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in ks.items()))


if __name__ == "__main__":
    main()
