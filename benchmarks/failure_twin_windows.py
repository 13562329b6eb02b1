"""Twin backtest: failure predictors before / after long windows and fleet-transferable features.

Trains on twin fleets (``--train-seeds``) before a split time and scores held-out fleets
(``--test-seeds``) after it, every model on the *same* rows (GPU-hours: windows ending every hour,
``--recent-h`` after the split), so window lengths can be compared:

- before: every model on 6 h windows at the twin's 5-minute steps, absolute features (levels,
  per-field observed shares);
- after: logistic / gbt on 6 h windows with fleet-transferable summaries; the LSTM on
  ``--lstm-window-h`` windows at ``--lstm-step-min`` steps with transferable inputs;
- the ceiling: ``analytics.failure.precursor_oracle`` (an observer who reads every precursor
  perfectly) on the same rows.

Twin figures flatter models: we designed the precursors. Pick settings on a validation seed, never
on the test seed.

    python benchmarks/failure_twin_windows.py --train-seeds 1,2,4,5 --test-seeds 3 [--cache DIR]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from gpufleet.analytics.datasets import DAY, HOUR, make_windows
from gpufleet.analytics.failure import (
    TWIN_START,
    History,
    concat,
    evaluate_twin,
    precursor_oracle,
    twin_history,
)
from gpufleet.analytics.failure_metrics import pr_auc
from gpufleet.models.baselines import BoostedTreesFailure, LogisticFailure, OperatorRules
from gpufleet.models.failure_base import FailureModel
from gpufleet.models.lstm_failure import LSTMFailure


def histories(seeds: list[int], gpus: int, days: float, rate: float, cache: Path | None) -> dict[int, History]:
    out = {}
    for s in seeds:
        f = cache / f"history-seed{s}-{gpus}gpus-{days:g}d-x{rate:g}.pkl" if cache else None
        if f is not None and f.exists():
            out[s] = pickle.loads(f.read_bytes())
            continue
        t0 = time.perf_counter()
        out[s] = twin_history(s, nodes=gpus // 8, days=days, rate_multiplier=rate)
        print(f"twin seed {s}: {time.perf_counter() - t0:.0f} s", flush=True)
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(pickle.dumps(out[s]))
    return out


def row(name: str, res: dict[str, Any]) -> str:
    b = res["models"][name]
    pr = [b[h]["pr_auc"] for h in ("1h", "24h", "7d")]
    return (f"  {name:22s} PR-AUC 1h {pr[0]:.3f}  24h {pr[1]:.3f}  7d {pr[2]:.3f}   ROC-AUC 24h "
            f"{b['24h']['roc_auc']:.3f}   recall@P>=0.5 24h {b['24h'].get('recall_at_precision_0.5') or 0.0:.3f}"
            f"   fit {b['_fit_seconds']:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-seeds", default="1,2,4,5")
    ap.add_argument("--test-seeds", default="3")
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--rate-multiplier", type=float, default=300.0)
    ap.add_argument("--lstm-window-h", type=float, default=48.0)
    ap.add_argument("--lstm-step-min", type=float, default=15.0)
    ap.add_argument("--lstm-blocks", type=int, default=16)
    ap.add_argument("--recent-h", type=float, default=6.0)
    ap.add_argument("--part", choices=("before", "after", "both"), default="both")
    ap.add_argument("--cache", type=Path, default=None, help="keep twin runs here between invocations")
    args = ap.parse_args()
    train = [int(x) for x in args.train_seeds.split(",")]
    test = [int(x) for x in args.test_seeds.split(",")]
    hist = histories(train + test, args.gpus, args.days, args.rate_multiplier, args.cache)
    kw = {"train_seeds": train, "test_seeds": test, "nodes": args.gpus // 8, "days": args.days,
          "rate_multiplier": args.rate_multiplier, "recent": args.recent_h * HOUR, "histories": hist}
    # the ceiling on the same rows
    th = concat([hist[s] for s in test])
    ws = make_windows(th.panel, th.failures, window=args.recent_h * HOUR, stride=HOUR)
    rows = ws.subset(np.flatnonzero(ws.t_end >= TWIN_START + 0.6 * args.days * DAY + args.recent_h * HOUR))
    oracle = precursor_oracle(rows, th.details)
    y = rows.y[:, 1]
    print(f"held-out rows: {len(rows)} windows, {int(y.sum())} positive at 24 h (prevalence {y.mean():.4f}); "
          f"{(oracle[y == 1] > 0).mean():.2f} of them have a running precursor")
    print(f"  precursor oracle (ceiling) PR-AUC 24h {pr_auc(y, oracle) or 0.0:.3f}", flush=True)
    if args.part in ("before", "both"):
        models: dict[str, FailureModel] = {
            "rules": OperatorRules(), "logistic": LogisticFailure(), "gbt": BoostedTreesFailure(),
            "lstm_failure": LSTMFailure(epochs=15, hidden=32, pool=6, features="absolute")}
        res = evaluate_twin(models=models, window=6 * HOUR, **kw)  # type: ignore[arg-type]
        print(f"before: 6 h windows at 5-minute steps, absolute features ({res['meta']['test_windows']} test windows)")
        for name in models:
            print(row(name, res), flush=True)
    if args.part in ("after", "both"):
        short: dict[str, FailureModel] = {"logistic": LogisticFailure(features="transfer"),
                                          "gbt": BoostedTreesFailure(features="transfer")}
        res = evaluate_twin(models=short, window=6 * HOUR, **kw)  # type: ignore[arg-type]
        print(f"after: logistic / gbt on 6 h windows, transferable summaries ({res['meta']['test_windows']} test windows)")
        for name in short:
            print(row(name, res), flush=True)
        long: dict[str, FailureModel] = {"lstm_failure": LSTMFailure(epochs=15, hidden=32, blocks=args.lstm_blocks,
                                                                   features="transfer")}
        res = evaluate_twin(models=long, window=args.lstm_window_h * HOUR, input_step=args.lstm_step_min * 60, **kw)
        print(f"after: LSTM on {args.lstm_window_h:g} h windows at {args.lstm_step_min:g}-minute steps, transferable "
              f"inputs ({res['meta']['test_windows']} test windows)")
        print(row("lstm_failure", res), flush=True)


if __name__ == "__main__":
    main()
