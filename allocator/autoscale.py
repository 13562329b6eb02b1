"""Autoscaling advice: how many GPU nodes to run, from pending and idle GPUs, with HPA-style stabilization.

Every step the *raw* desire is ``current + ceil(pending / gpus_per_node) - floor(idle / gpus_per_node)``.
Like Kubernetes' HorizontalPodAutoscaler, the recommendation is stabilised:

- scale out only to the *lowest* raw desire over the last ``scale_out_window_s`` (pending GPUs must persist);
- scale in only to the *highest* raw desire over the last ``scale_in_window_s`` (idle GPUs must persist);
- at most ``max_step_nodes`` nodes per decision, within [``min_nodes``, ``max_nodes``].

:func:`recommend` is what ``gpufleet serve`` exports as ``gpufleet_autoscale_recommended_nodes`` (a gauge
Kubernetes' HPA or KEDA can scale a node pool on).  :func:`simulate` replays a demand trace (GPUs wanted per
step) through a policy with a provisioning delay and reports GPU-hours idle vs GPU-hours pending; the
reactive baseline is the same rule with both windows at 0 (it scales on the current queue only).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRIC_NAME = "gpufleet_autoscale_recommended_nodes"
FIELD_ID = "autoscale_recommended_nodes"  # catalogue field id (label: pool)


@dataclass(frozen=True)
class AutoscaleSettings:
    gpus_per_node: int = 8
    scale_out_window_s: float = 300.0
    scale_in_window_s: float = 1800.0
    min_nodes: int = 0
    max_nodes: int | None = None
    max_step_nodes: int | None = None


@dataclass(frozen=True)
class Recommendation:
    nodes: int
    raw_nodes: int
    reason: str


def raw_desire(current_nodes: int, pending_gpus: float, idle_gpus: float, gpus_per_node: int) -> int:
    return int(current_nodes + math.ceil(max(0.0, pending_gpus) / gpus_per_node)
               - math.floor(max(0.0, idle_gpus) / gpus_per_node))


def recommend(pending_gpus: Sequence[float], idle_gpus: Sequence[float], current_nodes: int, step_s: float,
              settings: AutoscaleSettings | None = None, nodes_history: Sequence[int] | None = None,
              ) -> Recommendation:
    """Recommended node count from the recent history of pending and idle GPUs (oldest first, one value per
    ``step_s`` seconds; the last value is now).  ``nodes_history`` gives the node count at each of those steps
    (default: ``current_nodes`` throughout)."""
    st = settings or AutoscaleSettings()
    n = min(len(pending_gpus), len(idle_gpus))
    if n == 0:
        return Recommendation(current_nodes, current_nodes, "no data")
    nodes = list(nodes_history)[-n:] if nodes_history is not None else [current_nodes] * n
    nodes = [current_nodes] * (n - len(nodes)) + nodes
    desire = [raw_desire(nodes[i], pending_gpus[len(pending_gpus) - n + i], idle_gpus[len(idle_gpus) - n + i],
                         st.gpus_per_node) for i in range(n)]
    k_out = max(1, round(st.scale_out_window_s / step_s) + 1)
    k_in = max(1, round(st.scale_in_window_s / step_s) + 1)
    out_d = min(desire[-k_out:])
    in_d = max(desire[-k_in:])
    rec, reason = current_nodes, "stable"
    if out_d > current_nodes:
        rec, reason = out_d, f"pending GPUs persisted {st.scale_out_window_s:.0f}s"
    elif in_d < current_nodes:
        rec, reason = in_d, f"idle GPUs persisted {st.scale_in_window_s:.0f}s"
    if st.max_step_nodes is not None:
        rec = max(current_nodes - st.max_step_nodes, min(current_nodes + st.max_step_nodes, rec))
    rec = max(st.min_nodes, rec)
    if st.max_nodes is not None:
        rec = min(st.max_nodes, rec)
    return Recommendation(int(rec), desire[-1], reason)


@dataclass
class SimResult:
    idle_gpu_hours: float
    pending_gpu_hours: float
    node_hours: float
    scale_events: int
    nodes: np.ndarray


def simulate(demand: Sequence[float] | np.ndarray, step_s: float, settings: AutoscaleSettings, start_nodes: int,
             provision_delay_s: float = 300.0, decide_every_s: float = 60.0) -> SimResult:
    """Replay GPUs wanted per step through the policy.  New nodes serve after ``provision_delay_s``; removed
    nodes leave at once.  Steps with NaN demand (outages) are skipped for scoring and hold the state."""
    d = np.asarray(demand, dtype=float)
    gpn = settings.gpus_per_node
    delay = round(provision_delay_s / step_s)
    every = max(1, round(decide_every_s / step_s))
    keep = max(round(max(settings.scale_in_window_s, settings.scale_out_window_s) / step_s) + 2, 2)
    hist_p: deque[float] = deque(maxlen=keep)
    hist_i: deque[float] = deque(maxlen=keep)
    hist_n: deque[int] = deque(maxlen=keep)
    active = start_nodes
    arriving: deque[tuple[int, int]] = deque()  # (step when ready, nodes)
    target = start_nodes
    idle = pending = node_steps = 0.0
    events = 0
    trace = np.zeros(len(d))
    for t, want in enumerate(d):
        while arriving and arriving[0][0] <= t:
            active += arriving.popleft()[1]
        trace[t] = active
        if not np.isfinite(want):
            continue
        cap = active * gpn
        p, i = max(0.0, want - cap), max(0.0, cap - want)
        pending += p
        idle += i
        node_steps += active
        hist_p.append(p)
        hist_i.append(i)
        hist_n.append(active + sum(n for _, n in arriving))
        if t % every:
            continue
        committed = active + sum(n for _, n in arriving)
        rec = recommend(list(hist_p), list(hist_i), committed, step_s, settings, list(hist_n)).nodes
        if rec != target:
            events += 1
            target = rec
        if rec > committed:
            arriving.append((t + delay, rec - committed))
        elif rec < committed:
            drop = committed - rec
            while drop and arriving:  # cancel nodes still on their way first
                ready, n = arriving.pop()
                take = min(n, drop)
                drop -= take
                if n - take:
                    arriving.append((ready, n - take))
            active -= drop
    h = step_s / 3600
    return SimResult(idle * h, pending * h, node_steps * h, events, trace)


REACTIVE = AutoscaleSettings(scale_out_window_s=0.0, scale_in_window_s=0.0)


def autoscale_backtest(folder: str | Path, settings: AutoscaleSettings, provision_delay_s: float = 300.0,
                       series: list[str] | None = None) -> list[dict[str, float | int | str]]:
    """Helios replay (minute steps): the total and every VC, stabilised policy vs :data:`REACTIVE`."""
    from dataclasses import replace

    from gpufleet.analytics.forecast import mask_outages
    from gpufleet.analytics.helios import field_frame, load_all

    dem, _ = mask_outages(field_frame(load_all(folder)))
    dem["total"] = dem.sum(axis=1, min_count=dem.shape[1])
    reactive = replace(REACTIVE, gpus_per_node=settings.gpus_per_node)
    rows: list[dict[str, float | int | str]] = []
    for name in series or ["total", *[c for c in dem.columns if c != "total"]]:
        d = dem[name].to_numpy(dtype=float)
        first = d[np.isfinite(d)][:60]
        start = math.ceil(float(np.mean(first)) / settings.gpus_per_node) if len(first) else 0
        a = simulate(d, 60.0, settings, start, provision_delay_s)
        b = simulate(d, 60.0, reactive, start, provision_delay_s)
        rows.append({"series": name, "idle_gpu_hours": a.idle_gpu_hours, "pending_gpu_hours": a.pending_gpu_hours,
                     "scale_events": a.scale_events, "reactive_idle_gpu_hours": b.idle_gpu_hours,
                     "reactive_pending_gpu_hours": b.pending_gpu_hours, "reactive_scale_events": b.scale_events})
    return rows
