"""Trace replay of openb pod lists against a node list.

``fgd`` mode reproduces the FGD paper's protocol (Weng et al., ATC '23), as the issue describes it:

1. per seed, shuffle all pods of the list (CPU-only pods included);
2. append copies drawn at random with replacement from the whole list until the next draw would push the
   cumulative GPU request past 130 % of the cluster's GPU capacity (in thousandths of a GPU);
3. pods arrive one at a time and never leave; a pod that fits nowhere is skipped, but its request still
   counts as arrived; CPU-only pods use CPU and memory of GPU nodes and add nothing to the arrived request;
4. after every pod, record the allocated GPU share (fractional shares as their thousandths) over the
   capacity; the value at X % is the mean over all pods whose cumulative arrived request rounds to X %.

``timed`` mode (:mod:`allocator.replay_timed`) replays creation and deletion times through the job queue.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gpufleet.allocator.openb import Pods, load_nodes, load_pods
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.policies.base import Request
from gpufleet.allocator.state import ClusterState, NodeSpec

LIMIT = 1.30


def requests_of(pods: Pods) -> list[Request]:
    return [Request(int(pods.cpu[i]), int(pods.mem[i]), int(pods.num_gpu[i]),
                    int(pods.gpu_milli[i]) if pods.num_gpu[i] else 1000, pods.spec[i]) for i in range(len(pods))]


def arrival_order(pods: Pods, capacity_milli: int, seed: int, limit: float = LIMIT) -> np.ndarray:
    """Pod indexes in arrival order for one seed (steps 1 and 2 of the protocol)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pods))
    req = pods.request_milli
    cap = limit * capacity_milli
    cum = np.cumsum(req[order])
    if cum[-1] > cap:  # the list alone asks for more than the limit: stop before the first pod past it
        return order[: int(np.searchsorted(cum, cap, side="right"))]
    total = int(cum[-1])
    extra: list[int] = []
    while True:
        draws = rng.integers(len(pods), size=1024)
        for d in draws:
            if total + req[d] > cap:
                return np.concatenate([order, np.asarray(extra, dtype=np.int64)])
            total += int(req[d])
            extra.append(int(d))


@dataclass
class SeedResult:
    seed: int
    arrived_pct: np.ndarray
    alloc_pct: np.ndarray
    placed: int
    failed: int

    def value_at(self, x: int) -> float:
        sel = np.round(self.arrived_pct) == x
        return float(self.alloc_pct[sel].mean()) if sel.any() else float("nan")


def replay_fgd_seed(specs: Sequence[NodeSpec], pods: Pods, policy_name: str, seed: int,
                    reqs: list[Request] | None = None) -> SeedResult:
    state = ClusterState.from_specs(specs)
    reqs = reqs if reqs is not None else requests_of(pods)
    policy = make_policy(policy_name, seed=seed, mix=reqs)
    cap = state.capacity_milli
    order = arrival_order(pods, cap, seed)
    req_milli = pods.request_milli
    arrived = np.cumsum(req_milli[order]) * (100.0 / cap)
    alloc = np.empty(len(order))
    allocated = 0
    placed = failed = 0
    for k, i in enumerate(order):
        r = reqs[i]
        p = policy.place(state, r)
        if p is None:
            failed += 1
        else:
            state.allocate(p, r.cpu_milli, r.mem_mib)
            allocated += p.milli * len(p.gpus)
            placed += 1
        alloc[k] = allocated
    return SeedResult(seed, arrived, alloc * (100.0 / cap), placed, failed)


@dataclass
class FgdReport:
    nodes: str
    pods: str
    policy: str
    seeds: list[SeedResult] = field(default_factory=list)

    def at(self, x: int) -> tuple[float, float]:
        vals = np.array([s.value_at(x) for s in self.seeds])
        return float(vals.mean()), float(vals.std(ddof=0))

    def to_json(self, published: dict[str, tuple[float, float]] | None = None) -> dict:
        m100, s100 = self.at(100)
        m130, s130 = self.at(130)
        out = {
            "mode": "fgd", "nodes": self.nodes, "pods": self.pods, "policy": self.policy,
            "seeds": [s.seed for s in self.seeds],
            "alloc_pct_at_100": {"mean": round(m100, 3), "std": round(s100, 3),
                                 "per_seed": [round(s.value_at(100), 3) for s in self.seeds]},
            "alloc_pct_at_130": {"mean": round(m130, 3), "std": round(s130, 3)},
            "failed_pods": [s.failed for s in self.seeds],
        }
        if published:
            out["published"] = {k: {"mean": v[0], "std": v[1]} for k, v in published.items()}
        return out


def replay_fgd(nodes_path: str | Path, pods_path: str | Path, policy: str, seeds: Sequence[int],
               progress: Callable[[int], None] | None = None, workers: int = 1) -> FgdReport:
    """Run the FGD protocol for every seed (in ``workers`` processes when above 1)."""
    specs = load_nodes(nodes_path)
    pods = load_pods(pods_path)
    make_policy(policy)  # fail early on an unknown name
    report = FgdReport(str(nodes_path), str(pods_path), policy)
    if workers > 1 and len(seeds) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(replay_fgd_seed, specs, pods, policy, s) for s in seeds]
            for f in futs:
                report.seeds.append(f.result())
                if progress:
                    progress(1)
        return report
    reqs = requests_of(pods)
    for s in seeds:
        report.seeds.append(replay_fgd_seed(specs, pods, policy, s, reqs))
        if progress:
            progress(1)
    return report


PUBLISHED_NAMES = {"01-Random": "random", "02-DotProd": "dotprod", "03-GpuClustering": "gpu_clustering",
                   "04-GpuPacking": "gpu_packing", "05-BestFit": "best_fit", "06-FGD": "fgd"}


def published_figures(summary_csv: str | Path, pods_path: str | Path) -> dict[str, tuple[float, float]]:
    """Published (mean, std) at 100 % per policy for this pod list, from ``fgd_alloc_ratio_summary.csv``."""
    workload = Path(pods_path).stem
    out: dict[str, tuple[float, float]] = {}
    p = Path(summary_csv)
    if not p.exists():
        return out
    with p.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("workload") == workload:
                out[row["sc_policy"]] = (float(row["mean_gpu_alloc_pct_at_req100"]), float(row["std_at_req100"]))
    return out


def parse_seeds(text: str) -> list[int]:
    """``42-51`` or ``1,2,5`` or ``7``."""
    from gpufleet.exporter.errors import ConfigError

    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: use a range like 42-51 or a list like 1,2,3") from None
    if not out:
        raise ConfigError("--seeds names no seed")
    return out
