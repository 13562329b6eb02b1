"""Benchmark: train the LSTM failure predictor on 1,000 GPUs x 30 days of 1-minute history.

Target: <= 15 minutes on 2 cores. Windows are 6 h (360 steps) ending every hour: 720 windows per
GPU, 720,000 in all (minus the first 6 h). Each epoch draws a seeded random subsample of
``--windows-per-epoch`` training windows (default 60,000, i.e. every window is seen about once per
12 epochs); the figures printed are the epoch time, windows/s and the total fit time, plus the
time a full pass over every window would take at the measured rate.

    python benchmarks/failure_lstm_train.py [--gpus 1000] [--days 30] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.analytics.datasets import make_windows
from gpufleet.models.lstm_failure import LSTMFailure

from benchmarks.failure_synthetic import synthetic_panel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--windows-per-epoch", type=int, default=60_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    panel, fails = synthetic_panel(args.gpus, int(args.days * 1440), seed=0)
    ws = make_windows(panel, fails, window=6 * 3600, stride=3600, horizons=(3600.0, 86400.0, 7 * 86400.0))
    prep = time.perf_counter() - t0
    print(f"{args.gpus:,} GPUs x {args.days:g} days x {len(panel.fields)} fields at 1 min: {len(ws):,} windows "
          f"of 360 steps ({ws.y[:, 1].sum():,} positive at 24 h); data + windows built in {prep:.1f} s")
    model = LSTMFailure(epochs=args.epochs, windows_per_epoch=args.windows_per_epoch, threads=args.threads, seed=0)
    t1, c1 = time.perf_counter(), time.process_time()
    model.fit(ws.X, ws.mask, ws.y, feature_names=ws.feature_names, horizons=ws.horizons)
    fit_s, fit_cpu = time.perf_counter() - t1, time.process_time() - c1
    per_epoch = fit_s / args.epochs
    rate = args.windows_per_epoch / per_epoch
    print(f"fit: {fit_s:.1f} s wall ({fit_cpu:.1f} s CPU), {args.epochs} epochs x {args.windows_per_epoch:,} windows "
          f"(+ validation pass and calibration each epoch)")
    print(f"epoch: {per_epoch:.1f} s, {rate:,.0f} training windows/s (incl. validation); "
          f"a full pass over all {len(ws):,} windows would take ~{len(ws) / rate / 60:.1f} min")
    print(f"target <= 15 min total: {'met' if prep + fit_s <= 900 else 'NOT met'} ({(prep + fit_s) / 60:.1f} min); "
          f"load average {os.getloadavg()[0]:.1f}")
    for h in model.history_:
        print("  ", {k: round(v, 4) for k, v in h.items()})


if __name__ == "__main__":
    main()
