"""Twin backtest of every failure model beside the precursor oracle, with and without derived features.

Trains on ``--train-seeds`` fleets before the split (day 18 of 30), scores ``--eval-seeds`` fleets after
it (a validation fleet while choosing, held-out fleets once at the end) and prints, per model, PR-AUC and
ROC-AUC at 24 h beside ``analytics.failure.precursor_oracle`` (the twin's ceiling for telemetry models)
and the ratio to it. ``--derived both`` runs the models on the raw fields and with the event-history,
deviation and telemetry-health features of ``analytics.failure_features``.

    python benchmarks/failure_twin_oracle.py --train-seeds 1,2 --eval-seeds 6 --cache /tmp/twin-cache
    python benchmarks/failure_twin_oracle.py --train-seeds 1,2 --eval-seeds 3,7 --cache /tmp/twin-cache

Twin figures flatter models: we designed the precursors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from failure_twin_windows import histories
from gpufleet.analytics.failure import default_models, evaluate_twin, public


def table(res: dict[str, Any], label: str) -> list[dict[str, Any]]:
    oracle = res["models"]["precursor_oracle"]["24h"]
    rows = []
    for name, per in res["models"].items():
        b = per.get("24h", {})
        pr, roc = b.get("pr_auc"), b.get("roc_auc")
        rows.append({"features": label, "model": name, "pr_auc_24h": pr, "roc_auc_24h": roc,
                     "pr_vs_oracle": pr / oracle["pr_auc"] if pr is not None and oracle.get("pr_auc") else None,
                     "roc_vs_oracle": roc / oracle["roc_auc"] if roc is not None and oracle.get("roc_auc") else None,
                     "pr_auc_1h": per.get("1h", {}).get("pr_auc"), "pr_auc_7d": per.get("7d", {}).get("pr_auc")})
    return rows


def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-seeds", default="1,2")
    ap.add_argument("--eval-seeds", default="6")
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--rate-multiplier", type=float, default=300.0)
    ap.add_argument("--derived", choices=("on", "off", "both"), default="both")
    ap.add_argument("--groups", default="hist,own_dev,fleet_dev,health",
                    help="derived feature groups (analytics.failure_features.GROUPS) when derived is on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    train = [int(s) for s in args.train_seeds.split(",")]
    test = [int(s) for s in args.eval_seeds.split(",")]
    hist = histories(train + test, args.gpus, args.days, args.rate_multiplier, args.cache)
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    groups = tuple(g for g in args.groups.split(",") if g)
    for on in {"on": (True,), "off": (False,), "both": (False, True)}[args.derived]:
        derived: bool | tuple[str, ...] = groups if on else False
        t0 = time.perf_counter()
        res = evaluate_twin(train_seeds=train, test_seeds=test, nodes=args.gpus // 8, days=args.days,
                            rate_multiplier=args.rate_multiplier, histories=hist, derived=derived,
                            models=default_models(args.seed), seed=args.seed)
        label = f"derived ({'+'.join(groups)})" if on else "raw"
        out[label] = public(res)
        rows += table(res, label)
        meta = res["meta"]
        print(f"[{label}] {time.perf_counter() - t0:.0f} s; test rows {meta['test_windows']}, positive at 24 h "
              f"{meta['test_positives'].get('24h')}", file=sys.stderr, flush=True)
    print(f"train fleets {train}, eval fleets {test}, {args.gpus} GPUs x {args.days:g} d, rate x{args.rate_multiplier:g}")
    print("| features | model | PR-AUC 24 h | ROC-AUC 24 h | PR / oracle | ROC / oracle | PR-AUC 1 h | PR-AUC 7 d |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['features']} | `{r['model']}` | {_f(r['pr_auc_24h'])} | {_f(r['roc_auc_24h'])} | "
              f"{_f(r['pr_vs_oracle'])} | {_f(r['roc_vs_oracle'])} | {_f(r['pr_auc_1h'])} | {_f(r['pr_auc_7d'])} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "results": out}, indent=2))


if __name__ == "__main__":
    main()
