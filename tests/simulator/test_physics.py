"""Device physics: power cap and its throttle reason, first-order temperature, energy, ECC Poisson."""

from __future__ import annotations

import numpy as np
from gpufleet.simulator.inventory import default_inventory
from gpufleet.simulator.physics import POWER_CAP, SW_THERMAL, TAU_S, Activity, Physics


def _physics(n_nodes: int = 1) -> Physics:
    inv = default_inventory(n_nodes, 4, seed=1, models=("A100-SXM4-80GB",))
    gpus = [g for _, g in inv.gpus]
    return Physics(gpus, np.repeat(np.arange(n_nodes), 4), seed=1)


def _act(n: int, util: float, sm: float) -> Activity:
    return Activity(np.full(n, util), np.full(n, sm), np.full(n, 0.5), np.zeros(n))


def test_power_is_capped_by_the_limit_and_sets_the_reason() -> None:
    ph = _physics()
    ph.power_limit[:] = 250.0
    e0 = ph.energy.copy()
    drawn = np.zeros(ph.n)
    for _ in range(10):
        ph.step(60.0, _act(ph.n, 1.0, 0.95))
        drawn += ph.power * 60.0
        assert (ph.power <= 250.0).all()
        assert (ph.reasons & POWER_CAP).all()
        assert (ph.clock_sm < ph.sm_max).all()
    assert np.allclose(ph.energy - e0, drawn)  # energy integrates power
    assert np.allclose(ph.throttle_power_s, 600.0)
    assert (ph.fb_used > 0.4 * ph.mem_total).all()


def test_idle_gpus_draw_idle_power_and_report_gpu_idle() -> None:
    ph = _physics()
    ph.step(60.0, _act(ph.n, 0.0, 0.0))
    assert np.allclose(ph.power, ph.idle_w, rtol=0.2)
    assert (ph.reasons & 0x1).all() and (ph.util == 0).all()


def test_temperature_relaxes_with_the_time_constant() -> None:
    ph = _physics()
    for _ in range(200):  # settle at full load
        ph.step(60.0, _act(ph.n, 1.0, 0.95))
    hot = ph.temp.copy()
    for _ in range(200):  # settle at idle
        ph.step(60.0, _act(ph.n, 0.0, 0.0))
    cold = ph.temp.copy()
    assert (hot > cold + 20).all()
    ph.step(TAU_S, _act(ph.n, 1.0, 0.95))  # one time constant: ~63 % of the way
    frac = (ph.temp - cold) / (hot - cold)
    assert ((frac > 0.5) & (frac < 0.75)).all()


def test_hot_gpu_throttles_past_slowdown() -> None:
    ph = _physics()
    ph.temp_floor[:] = ph.slowdown + 1.0
    for _ in range(10):
        ph.step(60.0, _act(ph.n, 1.0, 0.6))
    assert (ph.temp >= ph.slowdown).all() and (ph.reasons & SW_THERMAL).all()
    assert (ph.throttle_thermal_s > 0).all()


def test_correctable_ecc_is_poisson_at_the_raised_rate() -> None:
    ph = _physics(n_nodes=25)  # 100 GPUs
    ph.sbe_mult[:] = 1000.0  # 50 per GPU-day
    for _ in range(24):
        ph.step(3600.0, _act(ph.n, 0.5, 0.5))
    mean, var = ph.sbe_vol.mean(), ph.sbe_vol.var()
    assert 45 < mean < 55 and 0.6 * mean < var < 1.6 * mean  # Poisson: variance ~ mean
    assert (ph.sbe_agg == ph.sbe_vol).all()
