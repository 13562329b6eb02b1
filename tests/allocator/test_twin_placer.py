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


def _twin_with_live_risk(seed: int = 5):  # type: ignore[no-untyped-def]
    from gpufleet.allocator.live_risk import LiveRisk
    from gpufleet.simulator.twin import Twin, TwinConfig

    twin = Twin(TwinConfig(nodes=1, gpus_per_node=4, seed=seed, warmup_s=0.0, step_s=300.0,
                           models=("H100-SXM5-80GB",)))
    prior = np.full(twin.n, 0.01)
    live = LiveRisk([g.uuid for g in twin.slots], prior=prior, window_s=6 * 3600.0)
    return twin, live, prior


def _observe(twin, live, start: float, hours: float) -> None:  # type: ignore[no-untyped-def]
    t = start
    while t < start + hours * 3600.0:
        t += 1800.0
        twin.advance(t)
        live.observe(twin.snapshot(0).samples, t)  # the exporter's samples, nothing else


def test_live_risk_rises_on_a_gpu_showing_an_ecc_precursor_in_its_telemetry() -> None:
    start = 1_767_225_600.0
    twin, live, prior = _twin_with_live_risk()
    twin.begin(start)
    # what the twin's ECC precursor does to a GPU (simulator.failures): correctable errors climb, a row remap
    # goes pending; the live risk sees it only through the exported counters and gauges
    twin.physics.sbe_mult[2] = 2000.0
    _observe(twin, live, start, 6.0)
    risk = live()
    assert live.fired["corrected_ecc"][2]
    assert risk[2] > 0.3 and np.allclose(np.delete(risk, 2), prior[0])
    twin.physics.row_pending[2] = 1.0
    _observe(twin, live, start + 6 * 3600.0, 1.0)
    assert live.fired["row_remap"][2] and live()[2] > risk[2]


def test_live_risk_does_not_see_the_twins_hidden_failure_schedule() -> None:
    start = 1_767_225_600.0
    twin, live, prior = _twin_with_live_risk()
    twin.begin(start)
    # a failure scheduled for later (no precursor) is known to the twin only; nothing exported shows it yet
    twin.inject_fault(twin.slots[1].uuid, "fall_off_bus", start + 86400.0)
    assert twin.failures.pending[1]
    _observe(twin, live, start, 4.0)
    assert np.allclose(live(), prior) and not live.telemetry.any()


def test_live_risk_rules_on_counters_gauges_and_links() -> None:
    from gpufleet.allocator.live_risk import LiveRisk
    from gpufleet.exporter.schema import Sample

    live = LiveRisk(["a", "b"], window_s=3600.0)

    def snap(ts: float, crc_a: float, replay_b: float, remap_b: float = 0.0) -> list[Sample]:
        return [Sample("a", "nvlink_crc_flit_errors", crc_a, ts, (("link", "0"),)),
                Sample("a", "nvlink_crc_flit_errors", crc_a, ts, (("link", "1"),)),
                Sample("b", "pcie_replay", replay_b, ts), Sample("b", "row_remap_pending", remap_b, ts),
                Sample("c", "pcie_replay", 1e6, ts)]  # an unknown GPU is ignored

    live.observe(snap(0.0, 0.0, 100.0), 0.0)
    live.observe(snap(900.0, 3.0, 0.0), 900.0)  # links summed: 6 CRC errors on a; b's counter was reset
    assert live.fired["nvlink_crc"].tolist() == [True, False]
    assert live.fired["pcie_replay"].tolist() == [False, False]
    live.observe(snap(1800.0, 3.0, 2.0, remap_b=1.0), 1800.0)
    assert live.fired["row_remap"].tolist() == [False, True]
    live.observe(snap(7200.0, 3.0, 2.0), 7200.0)  # older samples left the 1 h window: nothing grows
    assert not live.telemetry.any()
