"""Benchmark: the Slurm integration against a real single-host Slurm (the tests' fixture, 8 fake GPUs).

Figures: time for the cluster to come up; with N jobs in the queue (8 running on 1 GPU each, the rest
pending), the median wall time of ``sinfo --json`` + parse, ``squeue --json`` + parse, the mirror into
the allocator's ClusterState, and one remediation pass in dry-run (read nodes + decide). Baseline: the
bare ``squeue --json`` command (the client's own cost is the difference).

    python benchmarks/slurm_integration.py [--jobs 200] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpufleet.integrations.remediation import RemediationPolicy, Remediator
from gpufleet.integrations.slurm import SlurmClient, SlurmNodeManager
from gpufleet.integrations.slurm_mirror import cluster_state, pending_gpus
from tests.servers import Slurm


def median_ms(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    t0 = time.perf_counter()
    slurm = Slurm(gpus=8)
    up = time.perf_counter() - t0
    try:
        client = SlurmClient(conf=str(slurm.conf), timeout=30)
        subprocess.run(["sbatch", f"--array=0-{a.jobs - 1}", "--gres=gpu:1", "--output=/dev/null", "--wrap",
                        "sleep 300"], env={**os.environ, "SLURM_CONF": str(slurm.conf)}, check=True,
                       capture_output=True)
        time.sleep(3)
        env = {**os.environ, "SLURM_CONF": str(slurm.conf)}
        jobs = client.jobs()
        nodes = client.nodes()
        rem = Remediator(SlurmNodeManager(client), RemediationPolicy(max_share=1.0, dry_run=True))
        print(f"cluster up (slurmctld + slurmd, node idle): {up:.2f} s")
        print(f"queue: {len(jobs)} squeue records ({sum(j.tasks for j in jobs)} jobs), {sum(j.running for j in jobs)} running, pending GPUs {pending_gpus(jobs):g}")
        median_ms(client.jobs, 3)  # warm the controller's caches before timing anything
        base = median_ms(lambda: subprocess.run(["squeue", "--json"], env=env, capture_output=True, check=True),
                         a.repeat)
        print(f"squeue --json alone (baseline): {base:.1f} ms")
        print(f"client.jobs() (squeue --json + parse): {median_ms(client.jobs, a.repeat):.1f} ms")
        print(f"client.nodes() (sinfo --json + parse): {median_ms(client.nodes, a.repeat):.1f} ms")
        print(f"cluster_state mirror: {median_ms(lambda: cluster_state(nodes, jobs), a.repeat):.2f} ms")
        risk = {"gpunode1/gpu0": {"24h": 0.9}}
        print(f"remediation pass (dry run, reads nodes): {median_ms(lambda: rem.step(risk, 0.0), a.repeat):.1f} ms")
    finally:
        t = time.perf_counter()
        slurm.stop()
        print(f"teardown (cancel {a.jobs} jobs, empty queue, stop daemons): {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
