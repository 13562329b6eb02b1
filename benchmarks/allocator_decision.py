"""Placement decision latency on the 6,212-GPU openb cluster, and the 10-seed replay time.

Usage: python benchmarks/allocator_decision.py [--policies default,fgd,best_fit,random] [--workers 2]
       [--pods gpushare80] [--no-replay] [--with-risk]
For each policy: replays seed 42 of the default pod list (or ``--pods``) with the FGD protocol, timing every decision
(``policy.place``); prints the median, p90 and p99 in milliseconds. Then times the whole 10-seed replay
(seeds 42-51) of the default list with the default policy, in ``--workers`` processes.
``--with-risk`` gives every GPU a predicted 24 h failure risk (Beta(0.5, 200), mean 0.25 %, seeded) so the
composite's risk term runs (trace replays carry no risk), and reports single-GPU and multi-GPU decisions apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.allocator.openb import load_nodes, load_pods
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.replay import arrival_order, replay_fgd, requests_of
from gpufleet.allocator.state import ClusterState

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alibaba-openb" / "csv"


def decision_times(policy: str, seed: int = 42, pods_list: str = "default", risk: bool = False,
                   gpus: list[int] | None = None) -> np.ndarray:
    """Milliseconds per ``policy.place`` over one FGD-protocol replay; ``gpus`` collects each request's GPU count."""
    specs = load_nodes(DATA / "openb_node_list_gpu_node.csv")
    pods = load_pods(DATA / f"openb_pod_list_{pods_list}.csv")
    reqs = requests_of(pods)
    state = ClusterState.from_specs(specs)
    if risk:
        draw = np.random.default_rng(seed).beta(0.5, 200.0, state.risk.shape)
        state.risk[:] = np.where(state.gpu_present, draw, 0.0)
    pol = make_policy(policy, seed=seed, mix=reqs)
    out = []
    for i in arrival_order(pods, state.capacity_milli, seed):
        t0 = time.perf_counter()
        p = pol.place(state, reqs[i])
        out.append(time.perf_counter() - t0)
        if gpus is not None:
            gpus.append(reqs[i].num_gpu)
        if p is not None:
            state.allocate(p, reqs[i].cpu_milli, reqs[i].mem_mib)
    return np.asarray(out) * 1000.0


def _line(label: str, ms: np.ndarray) -> str:
    return (f"{label:24s} decisions {len(ms):6d}  median {np.median(ms):.3f} ms  p90 {np.percentile(ms, 90):.3f} ms"
            f"  p99 {np.percentile(ms, 99):.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", default="default,fgd,best_fit,random")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pods", default="default", help="pod list for the decision timing (e.g. gpushare80)")
    ap.add_argument("--no-replay", action="store_true", help="skip the 10-seed replay timing")
    ap.add_argument("--with-risk", action="store_true", help="also time decisions with a failure risk on every GPU")
    args = ap.parse_args()
    state = ClusterState.from_specs(load_nodes(DATA / "openb_node_list_gpu_node.csv"))
    print(f"cluster: {state.n_nodes} nodes, {int(state.gpu_count.sum())} GPUs")
    for pol in args.policies.split(","):
        ms = decision_times(pol, pods_list=args.pods)
        print(_line(pol, ms) + f"  ({args.pods})")
        if args.with_risk:
            gpus: list[int] = []
            ms = decision_times(pol, pods_list=args.pods, risk=True, gpus=gpus)
            multi = np.asarray(gpus) > 1
            print(_line(f"{pol} + risk", ms) + f"  ({args.pods})")
            print(_line(f"{pol} + risk, <= 1 GPU", ms[~multi]))
            if multi.any():
                print(_line(f"{pol} + risk, multi-GPU", ms[multi]))
    if args.no_replay:
        return
    t0 = time.perf_counter()
    rep = replay_fgd(DATA / "openb_node_list_gpu_node.csv", DATA / "openb_pod_list_default.csv", "default",
                     list(range(42, 52)), workers=args.workers)
    m, s = rep.at(100)
    print(f"10-seed replay of openb_pod_list_default, policy default, {args.workers} workers: "
          f"{time.perf_counter() - t0:.1f} s (alloc at 100 %: {m:.2f} ± {s:.2f})")


if __name__ == "__main__":
    main()
