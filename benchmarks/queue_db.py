"""The job queue with its state in the database, beside the same queue with persistence off.

A 10,000-GPU cluster (1,250 nodes x 8 H100 by default) and N pending single-GPU jobs; measured in one run:
  - submitting the batch,
  - one scheduling pass over every pending job (the pass that runs each cycle under the service's lock),
  - a second pass once the cluster is full (nothing fits: what most cycles cost),
  - 1,000 completions, each one operation (one transaction) as the job service applies them.
Targets (issue #16): a pass with 10,000 pending <= 50 ms, 1,000 completions <= 2 s.

    python benchmarks/queue_db.py [--nodes 1250] [--jobs 10000] [--database sqlite|URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gpufleet.allocator.jobs import JobSpec, PriorityClass
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import RUNNING, JobQueue
from gpufleet.allocator.state import ClusterState, NodeSpec


def cluster(nodes: int) -> ClusterState:
    return ClusterState.from_specs([NodeSpec(f"n{i:04d}", 128000, 1 << 20, 8, "H100") for i in range(nodes)])


def measure(queue: JobQueue, gpus: int, jobs: int, completions: int) -> dict[str, float]:
    def specs(prefix: str, n: int) -> list[JobSpec]:
        return [JobSpec(f"{prefix}{i}", gpus=1, duration_s=3600 + i % 600,
                        priority=PriorityClass.BATCH if i % 3 else PriorityClass.NORMAL) for i in range(n)]

    out: dict[str, float] = {}
    t = time.perf_counter()
    queue.submit(specs("fill", gpus), 0.0)
    out["submit_fill"] = time.perf_counter() - t
    t = time.perf_counter()
    out["started"] = len(queue.schedule(1.0))
    out["fill_pass"] = time.perf_counter() - t
    t = time.perf_counter()
    queue.submit(specs("wait", jobs), 2.0)
    out["submit"] = time.perf_counter() - t
    passes = []
    for k in range(5):
        t = time.perf_counter()
        queue.schedule(3.0 + k)
        passes.append(time.perf_counter() - t)
    out["pass"] = statistics.median(passes)
    running = [r.spec.name for r in queue.jobs.values() if r.status == RUNNING][:completions]
    t = time.perf_counter()
    for name in running:
        queue.finish(name, 100.0, 0)
    out["completions"] = time.perf_counter() - t
    out["n_completions"] = len(running)
    t = time.perf_counter()
    out["started_after"] = len(queue.schedule(101.0))  # the freed GPUs taken by waiting jobs
    out["pass_after"] = time.perf_counter() - t
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1250)
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--completions", type=int, default=1000)
    ap.add_argument("--database", default="sqlite", help="sqlite (a file in a temporary folder) or a database URL")
    args = ap.parse_args()
    from gpufleet.jobs import open_queue
    from gpufleet.state import close_state

    with tempfile.TemporaryDirectory(prefix="gpufleet-queue-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'state.db'}" if args.database == "sqlite" else args.database
        results = {}
        for label in ("persistence off", "database"):
            state = cluster(args.nodes)
            q = (JobQueue(state, make_policy("default"), auto_start=True) if label == "persistence off"
                 else open_queue(url, state, make_policy("default"), auto_start=True))
            results[label] = measure(q, args.nodes * 8, args.jobs, args.completions)
            if label == "database":
                close_state(url)
    gpus = args.nodes * 8
    print(f"{gpus:,} GPUs ({args.nodes:,} nodes x 8), {args.jobs:,} pending jobs, database {args.database}")
    print(f"{'':38}{'persistence off':>16}{'database':>12}{'ratio':>8}")
    rows = ((f"submit {gpus:,} jobs (fills the cluster)", "submit_fill"), ("pass placing them", "fill_pass"),
            (f"submit {args.jobs:,} more", "submit"),
            (f"pass, {args.jobs:,} pending, full (median/5)", "pass"),
            (f"{args.completions:,} completions", "completions"), ("pass after the completions", "pass_after"))
    for name, k in rows:
        off, db = results["persistence off"][k], results["database"][k]
        print(f"{name:38}{off * 1e3:13.1f} ms{db * 1e3:9.1f} ms{db / off if off else float('nan'):7.2f}x")
    db = results["database"]
    print(f"started: {db['started']:.0f} in the first pass, {db['started_after']:.0f} after the completions")
    print(f"targets: pass with {args.jobs:,} pending <= 50 ms: {'met' if db['pass'] <= 0.05 else 'NOT met'} "
          f"({db['pass'] * 1e3:.0f} ms); {args.completions:,} completions <= 2 s: "
          f"{'met' if db['completions'] <= 2 else 'NOT met'} ({db['completions']:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
