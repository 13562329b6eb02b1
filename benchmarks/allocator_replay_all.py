"""Replay every openb pod list with the FGD protocol (seeds 42-51) and print ours beside the published figures.

Usage: python benchmarks/allocator_replay_all.py [--policies default,fgd,best_fit,random] [--workers 2]
Prints one Markdown table (value at 100 % requested: mean ± std over seeds) and writes it as JSON lines
to --out when given. The figures in docs/allocator.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.allocator.replay import published_figures, replay_fgd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alibaba-openb"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", default="default,fgd,best_fit,random")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", default="42-51")
    ap.add_argument("--lists", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    a, b = (int(x) for x in args.seeds.split("-"))
    seeds = list(range(a, b + 1))
    nodes = DATA / "csv" / "openb_node_list_gpu_node.csv"
    lists = sorted((DATA / "csv").glob("openb_pod_list_*.csv"))
    if args.lists:
        lists = [p for p in lists if p.stem.removeprefix("openb_pod_list_") in args.lists.split(",")]
    pols = args.policies.split(",")
    rows = []
    for pods in lists:
        pub = published_figures(DATA / "fgd_alloc_ratio_summary.csv", pods)
        row = {"list": pods.stem, "published": pub}
        for pol in pols:
            t0 = time.perf_counter()
            rep = replay_fgd(nodes, pods, pol, seeds, workers=args.workers)
            m, s = rep.at(100)
            row[pol] = {"mean": round(m, 2), "std": round(s, 2), "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    pub_names = ["01-Random", "02-DotProd", "03-GpuClustering", "04-GpuPacking", "05-BestFit", "06-FGD"]
    print("| pod list | " + " | ".join(f"ours: {p}" for p in pols) + " | " + " | ".join(pub_names) + " |")
    print("|---" * (1 + len(pols) + len(pub_names)) + "|")
    for r in rows:
        ours = " | ".join(f"{r[p]['mean']:.2f} ± {r[p]['std']:.2f}" for p in pols)
        pub = " | ".join(f"{r['published'][n][0]:.2f}" if n in r["published"] else "n/a" for n in pub_names)
        print(f"| {r['list'].removeprefix('openb_pod_list_')} | {ours} | {pub} |")


if __name__ == "__main__":
    main()
