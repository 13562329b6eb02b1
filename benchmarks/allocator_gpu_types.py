"""Benchmark: placement when a share of the GPU pods may only run on some GPU models (FGD paper, GPU types).

None of the openb pod lists constrains GPU types, so this builds such lists from the default list: a
share (5 %, 10 %, 20 %, 25 %, 33 %) of the GPU pods, drawn at random (seeded), get a ``gpu_spec`` of one
model (half of them) or two models (the other half), drawn with probability proportional to each model's
GPU capacity among the models with a node that can hold the pod (enough GPUs, CPU and memory).  Each list
is replayed with the FGD protocol (``allocator.replay``) for the default policy, FGD and BestFit.

Run: python benchmarks/allocator_gpu_types.py [--shares 5,10,20,25,33] [--seeds 42-51] [--policies ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpufleet.allocator.replay import parse_seeds, replay_fgd  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "alibaba-openb" / "csv"


def constrain(pods: pd.DataFrame, nodes: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    """``pods`` with ``gpu_spec`` set on ``share`` of the GPU pods (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out = pods.copy()
    out["gpu_spec"] = out["gpu_spec"].astype(object) if "gpu_spec" in out else None
    gpu = np.flatnonzero(out["num_gpu"].to_numpy() > 0)
    pick = rng.choice(gpu, size=round(share * len(gpu)), replace=False)
    cap = nodes.groupby("model")["gpu"].sum()
    for i in pick:
        p = out.iloc[i]
        fit = nodes[(nodes["gpu"] >= p["num_gpu"]) & (nodes["cpu_milli"] >= p["cpu_milli"])
                    & (nodes["memory_mib"] >= p["memory_mib"])]["model"].unique()
        if len(fit) == 0:
            continue
        w = cap[fit].to_numpy(dtype=float)
        k = min(len(fit), 1 if rng.random() < 0.5 else 2)
        models = rng.choice(fit, size=k, replace=False, p=w / w.sum())
        out.iat[i, out.columns.get_loc("gpu_spec")] = "|".join(sorted(models))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", default="5,10,20,25,33")
    ap.add_argument("--seeds", default="42-51")
    ap.add_argument("--policies", default="default,fgd,best_fit")
    ap.add_argument("--keep", default="", help="folder to keep the built pod lists in")
    args = ap.parse_args()
    nodes_csv = DATA / "openb_node_list_gpu_node.csv"
    nodes = pd.read_csv(nodes_csv)
    pods = pd.read_csv(DATA / "openb_pod_list_default.csv")
    seeds = parse_seeds(args.seeds)
    pols = args.policies.split(",")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gputypes-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"seeds {args.seeds}; % of GPUs allocated when the arrived pods have requested 100 % of capacity")
    print("| GPU pods constrained | " + " | ".join(pols) + " |")
    print("|---" * (len(pols) + 1) + "|")
    t0 = time.perf_counter()
    for s in (int(x) for x in args.shares.split(",")):
        path = folder / f"openb_pod_list_gpuspec{s:02d}.csv"
        constrain(pods, nodes, s / 100, seed=s).to_csv(path, index=False)
        cells = []
        for pol in pols:
            m, sd = replay_fgd(nodes_csv, path, pol, seeds).at(100)
            cells.append(f"{m:.2f} ± {sd:.2f}")
        print(f"| {s} % | " + " | ".join(cells) + " |", flush=True)
    print(f"wall {time.perf_counter() - t0:.0f} s; lists in {folder}")


if __name__ == "__main__":
    main()
