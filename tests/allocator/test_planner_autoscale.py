"""Autoscaling advice: HPA-style stabilization and the replay against the reactive rule."""

from __future__ import annotations

import numpy as np
from gpufleet.allocator.autoscale import REACTIVE, AutoscaleSettings, recommend, simulate


def test_scale_out_only_when_pending_persists() -> None:
    st = AutoscaleSettings(gpus_per_node=8, scale_out_window_s=300, scale_in_window_s=1800)
    short = recommend([0, 0, 0, 0, 0, 16], [0] * 6, 4, 60, st)
    assert short.nodes == 4 and short.raw_nodes == 6
    persisted = recommend([16] * 6, [0] * 6, 4, 60, st)
    assert persisted.nodes == 6 and "pending" in persisted.reason


def test_scale_in_waits_for_the_stabilization_window() -> None:
    st = AutoscaleSettings(gpus_per_node=8, scale_out_window_s=300, scale_in_window_s=600)
    recent_idle = recommend([0] * 11, [0] * 5 + [24] * 6, 6, 60, st)
    assert recent_idle.nodes == 6
    long_idle = recommend([0] * 11, [24] * 11, 6, 60, st)
    assert long_idle.nodes == 3 and "idle" in long_idle.reason
    assert recommend([0] * 11, [80] * 11, 6, 60, AutoscaleSettings(min_nodes=2)).nodes == 2


def test_stabilised_policy_scales_less_often_than_reactive() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(3 * 1440)
    demand = 200 + 80 * np.sin(2 * np.pi * t / 1440) + rng.normal(0, 12, len(t))
    demand[100:130] = np.nan  # outage: skipped
    st = AutoscaleSettings()
    a = simulate(demand, 60, st, 25)
    b = simulate(demand, 60, REACTIVE, 25)
    assert a.scale_events < b.scale_events / 3
    assert a.idle_gpu_hours > 0 and b.idle_gpu_hours > 0
    assert np.isfinite(a.pending_gpu_hours) and a.node_hours > 0
