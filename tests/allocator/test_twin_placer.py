from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.twin_placer import PolicyPlacer, measure


def view(free: list[float], healthy: list[bool] | None = None) -> SimpleNamespace:
    n = len(free)
    return SimpleNamespace(free=np.array(free), healthy=np.array(healthy or [True] * n),
                           node_of=np.repeat([0, 1], n // 2), node_slices=[slice(0, n // 2), slice(n // 2, n)])


def test_placer_maps_policy_choice_to_twin_gpu_indexes() -> None:
    placer = PolicyPlacer(make_policy("best_fit"))
    job = SimpleNamespace(n_gpus=1, share=0.5, duration=600.0)
    # GPU 5 (node 1) is half used: best fit puts the half-GPU job there
    assert placer.place(job, view([1, 1, 1, 1, 1, 0.5, 1, 1])) == [5]
    whole = SimpleNamespace(n_gpus=4, share=1.0, duration=600.0)
    assert placer.place(whole, view([1, 1, 1, 1, 1, 0.5, 1, 1], [True] * 4 + [True] * 4)) == [0, 1, 2, 3]
    assert placer.place(whole, view([1, 1, 1, 0, 1, 0.5, 1, 1])) is None


def test_placer_passes_risk_to_risk_aware_policies() -> None:
    risk = np.array([0.2] * 4 + [0.0] * 4)
    placer = PolicyPlacer(make_policy("default"), risk=risk)
    long_job = SimpleNamespace(n_gpus=2, share=1.0, duration=72 * 3600.0)
    got = placer.place(long_job, view([1.0] * 8))
    assert got is not None and min(got) >= 4


@pytest.mark.slow
def test_twin_runs_with_an_allocator_policy() -> None:
    from gpufleet.simulator.twin import Twin, TwinConfig

    twin = Twin(TwinConfig(nodes=2, gpus_per_node=4, seed=3, warmup_s=3600.0, step_s=300.0),
                placer=PolicyPlacer(make_policy("default", seed=3)))
    out = measure(twin, 1_767_225_600.0, days=0.5)
    assert 0.0 < out["allocation_mean"] <= 1.0
    assert out["gpu_hours_done"] > 0
    assert (twin.cluster.used <= 1.0 + 1e-9).all()


@pytest.mark.slow
def test_risk_aware_lowers_expected_failure_loss_in_the_twin() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from allocator_risk_twin import run_arm

    blind = run_arm(seed=2, risk_weight=0.0, days=1.0, nodes=4, rate=300.0)
    aware = run_arm(seed=2, risk_weight=1000.0, days=1.0, nodes=4, rate=300.0)
    assert aware["expected_gpu_hours_lost"] < blind["expected_gpu_hours_lost"]
    assert abs(aware["allocation_mean"] - blind["allocation_mean"]) < 0.05  # at (nearly) equal allocation
