"""Timed replay: an openb pod list's creation and deletion times through the job queue.

Each pod becomes a job submitted at its creation time that runs for ``deletion - creation`` seconds once
started (a pod that waits in the queue finishes later than in the trace). Events are processed in time
order: completions, then arrivals, then one scheduling pass. Reported: GPU allocation over time
(time-weighted mean over the arrival window and a sampled series), queueing delay and job completion time (mean, median, p95),
fragmentation (free thousandths stranded on partly used GPUs, time-weighted share of capacity),
preemptions, and the jobs never started. The openb default list keeps the cluster nearly idle at its
own pace (pods spread over ~149 days); ``compress`` squeezes the arrivals to load the cluster.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gpufleet.allocator.jobs import JobSpec
from gpufleet.allocator.openb import Pods, load_nodes, load_pods
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import RUNNING, JobQueue
from gpufleet.allocator.state import FULL, ClusterState
from gpufleet.exporter.errors import ConfigError


def jobs_of(pods: Pods, limit: int | None = None, compress: float = 1.0) -> list[tuple[float, JobSpec]]:
    """(submit time, job) per pod with both times, in creation order; ``compress`` > 1 squeezes arrivals."""
    out = []
    origin = float(np.nanmin(pods.creation))
    for i in np.argsort(pods.creation, kind="stable")[: limit or len(pods)]:
        c, d = pods.creation[i], pods.deletion[i]
        if not (np.isfinite(c) and np.isfinite(d)) or d <= c:
            continue
        n = int(pods.num_gpu[i])
        milli = int(pods.gpu_milli[i]) if n else FULL
        out.append((origin + float(c - origin) / compress, JobSpec(pods.names[i], gpus=n, gpu_milli=milli, cpu_milli=int(pods.cpu[i]),
                                      memory_mib=int(pods.mem[i]), duration_s=float(d - c),
                                      gpu_types=tuple(sorted(pods.spec[i] or ())), user=pods.qos[i] or "unknown",
                                      team=pods.qos[i] or "default")))
    return out


def _stats(x: list[float]) -> dict[str, float]:
    if not x:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    a = np.asarray(x)
    return {"mean": round(float(a.mean()), 1), "p50": round(float(np.median(a)), 1),
            "p95": round(float(np.percentile(a, 95)), 1), "max": round(float(a.max()), 1)}


@dataclass
class TimedReport:
    policy: str
    jobs: int
    started: int
    never_started: int
    util_mean: float
    frag_mean: float
    queue_delay_s: dict[str, float]
    jct_s: dict[str, float]
    preemptions: int
    rejected: int
    series: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"mode": "timed", "policy": self.policy, "jobs": self.jobs, "started": self.started,
                "never_started": self.never_started, "gpu_allocation_mean": round(self.util_mean, 4),
                "fragmentation_mean": round(self.frag_mean, 4), "queue_delay_s": self.queue_delay_s,
                "jct_s": self.jct_s, "preemptions": self.preemptions, "rejected": self.rejected,
                "series": [[round(t, 1), round(u, 4)] for t, u in self.series]}


def replay_timed(nodes_path: str | Path, pods_path: str | Path, policy: str, seed: int = 0,
                 limit: int | None = None, progress: Callable[[int], None] | None = None,
                 compress: float = 1.0) -> TimedReport:
    """Replay creation/deletion times; ``compress`` divides the gaps between arrivals (durations kept)."""
    pods = load_pods(pods_path)
    if not pods.has_times:
        raise ConfigError(f"{pods_path} has no creation/deletion times; use --mode fgd")
    state = ClusterState.from_specs(load_nodes(nodes_path))
    q = JobQueue(state, make_policy(policy, seed=seed))
    arrivals = jobs_of(pods, limit, compress)
    cap = state.capacity_milli
    done_heap: list[tuple[float, str]] = []
    t_prev = arrivals[0][0] if arrivals else 0.0
    util_area = frag_area = 0.0
    series: list[tuple[float, float]] = []
    k = 0
    rejected = 0
    n = len(arrivals)
    while k < n or done_heap:
        t = min(arrivals[k][0] if k < n else np.inf, done_heap[0][0] if done_heap else np.inf)
        dt = t - t_prev
        if k < n:  # allocation and fragmentation are averaged over the arrival window
            util_area += dt * state.allocated_milli() / cap
            frag_area += dt * state.fragmentation_milli() / cap
        t_prev = t
        while done_heap and done_heap[0][0] <= t:
            _, name = heapq.heappop(done_heap)
            if q.jobs[name].status == RUNNING:
                q.complete(name, t)
        batch = []
        while k < n and arrivals[k][0] <= t:
            batch.append(arrivals[k][1])
            k += 1
        if batch:
            _, rej = q.submit(batch, t)
            rejected += len(rej)
            if progress:
                progress(len(batch))
        for name in q.schedule(t):
            rec = q.jobs[name]
            heapq.heappush(done_heap, (t + rec.remaining_s, name))
        if not series or t - series[-1][0] >= 3600:
            series.append((t, state.allocated_milli() / cap))
    span = max(1e-9, (arrivals[-1][0] - arrivals[0][0]) if arrivals else 0.0)
    recs = list(q.jobs.values())
    delays = [r.first_start - r.submitted for r in recs if r.first_start is not None]
    jct = [r.finished - r.submitted for r in recs if r.finished is not None]
    return TimedReport(policy, len(arrivals), len(delays), len(recs) - len(delays), util_area / span,
                       frag_area / span, _stats(delays), _stats(jct), int(q.counters["preemptions"]), rejected,
                       series)
