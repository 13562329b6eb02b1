"""Device physics of the twin, vectorised over every GPU of the fleet (numpy arrays, no per-GPU loop).

* Power: idle + (TDP - idle) x dynamic(utilization, SM activity) with noise, capped by the power limit.
* Temperature: first-order model towards inlet + power x thermal resistance x slot cooling, time
  constant ``TAU_S``; the HBM runs a few degrees above the core.
* Clocks: max SM clock when busy, idle clock when idle; the power cap and the slowdown temperature
  pull them down and set the NVML clock-event (throttle) reason bits.
* Memory: from the jobs; energy integrates power; PCIe traffic follows utilization; correctable ECC
  errors arrive as a Poisson process whose rate the failure model raises before some failures.

Calibration (see docs/twin.md): with the synthetic workload, the fleet's utilization, SM activity,
temperature and power distributions match the AcmeTrace Seren A100 CDFs (KS distances in the docs,
bounded in tests/simulator/test_calibration.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gpufleet.simulator.inventory import GpuSlot

# NVML clock-event reason bits (nvmlClocksEventReason*).
REASON_BITS = {
    "gpu_idle": 0x1, "applications_clocks_setting": 0x2, "sw_power_cap": 0x4, "hw_slowdown": 0x8,
    "sync_boost": 0x10, "sw_thermal_slowdown": 0x20, "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80, "display_clock_setting": 0x100,
}
IDLE, POWER_CAP, SW_THERMAL, HW_THERMAL = 0x1, 0x4, 0x20, 0x40

TAU_S = 90.0  # thermal time constant of a board + heatsink
INLET_C = 20.0  # mean inlet air temperature
INLET_SD = 2.5  # spread between nodes / aisles
IDLE_SM_HZ = 210e6
# Dynamic power: share of the TDP range drawn at a given activity; a logistic in SM activity with a
# small linear term in utilization (tensor-heavy kernels keep both high). Calibrated to AcmeTrace.
DYN_UTIL_WEIGHT = 0.08
DYN_SM_MID = 0.70
DYN_SM_WIDTH = 0.045
# Steady-state rise over the inlet: THERMAL_RISE_C x ((P/TDP - THERMAL_FLOOR) / (1 - THERMAL_FLOOR))
# ** THERMAL_EXP: the first watts above the idle floor (P8 -> P0 voltage step) heat the die fast,
# then server fans ramp up and the rise flattens. Calibrated to AcmeTrace temperature and power.
THERMAL_RISE_C = 40.0
THERMAL_FLOOR = 0.14
# Air preheated by the node's other GPUs: inlet + PREHEAT_C x mean power share of the node's GPUs.
PREHEAT_C = 10.0
THERMAL_EXP = 0.45
SBE_PER_DAY = 0.05  # baseline correctable ECC errors per GPU-day (most GPUs see none)


@dataclass(slots=True)
class Activity:
    """What the workload asks of every GPU during a step (arrays of length n)."""

    util: np.ndarray
    sm: np.ndarray  # SM activity ratio
    mem_frac: np.ndarray
    nvlink: np.ndarray


class Physics:
    """State arrays of every GPU and their update for one step."""

    def __init__(self, gpus: list[GpuSlot], node_of: np.ndarray, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 5])
        n = len(gpus)
        self.n = n
        sp = [g.spec for g in gpus]
        f = np.array
        self.tdp = f([s.tdp_w for s in sp])
        self.power_limit = self.tdp.copy()
        self.idle_w = f([s.idle_w for s in sp])
        self.sm_max = f([s.sm_clock_max_hz for s in sp])
        self.mem_max = f([s.mem_clock_max_hz for s in sp])
        self.slowdown = f([s.slowdown_c for s in sp])
        self.shutdown = f([s.shutdown_c for s in sp])
        self.mem_total = f([float(s.memory_bytes) for s in sp])
        self.pcie_bw = f([s.pcie_bytes_s for s in sp])
        self.links = np.array([s.nvlink_links for s in sp], dtype=int)
        self.max_links = int(self.links.max()) if n else 0
        self.link_bw = f([s.nvlink_link_bytes_s for s in sp])
        self.rise = f([THERMAL_RISE_C * g.cooling for g in gpus])
        n_nodes = int(node_of.max()) + 1 if n else 0
        self.node_of, self.n_nodes = node_of, n_nodes
        self.node_size = np.maximum(np.bincount(node_of, minlength=n_nodes), 1)
        node_inlet = INLET_C + INLET_SD * self.rng.standard_normal(n_nodes)
        self.inlet = node_inlet[node_of] + 1.5 * self.rng.standard_normal(n)
        # Modifiers the failure model drives.
        self.cooling_degrade = np.ones(n)
        self.temp_floor = np.full(n, -np.inf)  # injected overheat: steady state held at least here
        self.sbe_mult = np.ones(n)
        self.pcie_replay_rate = np.full(n, 1e-6)  # per second
        self.nvlink_crc_rate = np.zeros(n)  # per second, on link 0 of the GPU
        self.link_width = np.array([s.pcie_width for s in sp], dtype=float)
        self.link_width_max = self.link_width.copy()
        self.nvlink_down = np.zeros((n, max(self.max_links, 1)), dtype=bool)
        self.lost = np.zeros(n, dtype=bool)
        # Observable state.
        self.util = np.zeros(n)
        self.sm_active = np.zeros(n)
        self.mem_util = np.zeros(n)
        self.fb_used = np.zeros(n)
        self.power = self.idle_w.copy()
        self.temp = self.inlet + self.rise * _heat(self.power / self.tdp)
        self.mem_temp = self.temp + 3.0
        self.clock_sm = np.full(n, IDLE_SM_HZ)
        self.clock_mem = self.mem_max.copy()
        self.reasons = np.full(n, IDLE, dtype=np.int64)
        self.energy = np.zeros(n)
        self.pcie_tx = np.zeros(n)
        self.pcie_rx = np.zeros(n)
        self.pcie_replay = np.zeros(n)
        self.throttle_power_s = np.zeros(n)
        self.throttle_thermal_s = np.zeros(n)
        self.sbe_vol = np.zeros(n)
        self.sbe_agg = np.zeros(n)
        self.dbe_vol = np.zeros(n)
        self.dbe_agg = np.zeros(n)
        self.rows_corr = np.zeros(n)
        self.rows_unc = np.zeros(n)
        self.row_pending = np.zeros(n)
        self.row_failure = np.zeros(n)
        self.retired_sbe = np.zeros(n)
        self.retired_dbe = np.zeros(n)
        self.retired_pending = np.zeros(n)
        self.tensor = np.zeros(n)
        self.dram = np.zeros(n)
        self.occupancy = np.zeros(n)
        self.nvlink_tx = np.zeros((n, max(self.max_links, 1)))
        self.nvlink_rx = np.zeros((n, max(self.max_links, 1)))
        self.nvlink_crc = np.zeros((n, max(self.max_links, 1)))
        self.link_mask = np.arange(max(self.max_links, 1))[None, :] < self.links[:, None]
        # Fixed base reserved by the driver (~0.6 % of the framebuffer).
        self.fb_reserved = np.round(self.mem_total * 0.006 / 2**20) * 2**20

    def step(self, dt: float, act: Activity) -> None:
        """Advance every GPU by ``dt`` seconds under the workload ``act``."""
        rng, n = self.rng, self.n
        noise = rng.standard_normal((4, n))
        busy = act.util > 0.0
        util = np.where(busy, np.clip(act.util * (1.0 + 0.008 * noise[0]), 0.0, 1.0), 0.0)
        sm = np.where(busy, np.clip(act.sm * (1.0 + 0.06 * noise[1]), 0.0, 1.0), 0.0)
        sm = np.minimum(sm, util)
        dyn = DYN_UTIL_WEIGHT * util + (1 - DYN_UTIL_WEIGHT) * _logistic((sm - DYN_SM_MID) / DYN_SM_WIDTH) * (sm > 0)
        demand = self.idle_w + (self.tdp - self.idle_w) * np.clip(dyn, 0.0, 1.1)
        demand = demand * (1.0 + 0.025 * noise[2]) + np.where(busy, 0.0, 0.05 * self.idle_w * noise[3])
        capped = demand > self.power_limit
        power = np.minimum(demand, self.power_limit * (1.0 - 0.01 * np.abs(noise[3])))
        # Thermal: first-order relaxation towards the steady state of this step's power.
        share = power / self.tdp
        node_load = np.bincount(self.node_of, share, minlength=self.n_nodes) / self.node_size
        t_ss = self.inlet + PREHEAT_C * node_load[self.node_of] + self.rise * self.cooling_degrade * _heat(share)
        t_ss = np.maximum(t_ss, self.temp_floor)
        alpha = 1.0 - np.exp(-dt / TAU_S)
        temp = self.temp + (t_ss - self.temp) * alpha
        hot = temp >= self.slowdown
        very_hot = temp >= self.shutdown - 1.0
        # Clocks: power cap scales clocks ~ cube root of power; thermal slowdown cuts 30 %.
        clk = np.where(busy, self.sm_max, IDLE_SM_HZ)
        clk = np.where(capped, clk * np.cbrt(self.power_limit / np.maximum(demand, 1.0)), clk)
        clk = np.where(hot, clk * 0.7, clk)
        power = np.where(hot, power * 0.8, power)
        reasons = np.where(busy, 0, IDLE) | np.where(capped, POWER_CAP, 0) | np.where(hot, SW_THERMAL, 0) \
            | np.where(very_hot, HW_THERMAL, 0)
        # NVML reports utilization in whole percent.
        self.util, self.sm_active, self.power, self.temp = np.asarray(np.round(util, 2), float), sm, power, temp
        self.clock_sm = np.round(clk / 15e6) * 15e6
        self.reasons = reasons.astype(np.int64)
        self.mem_util = util * np.clip(0.25 + 0.6 * sm, 0.0, 1.0)
        self.tensor = sm * 0.45
        self.dram = self.mem_util * 0.8
        self.occupancy = sm * 0.3
        self.mem_temp = temp + 2.0 + 8.0 * self.mem_util
        used = np.clip(act.mem_frac, 0.0, 0.98) * self.mem_total
        self.fb_used = np.round((used + self.fb_reserved * 0.5 + 2**20 * 300 * busy) / 2**20) * 2**20
        self.energy += power * dt
        self.throttle_power_s += np.where(capped, dt, 0.0)
        self.throttle_thermal_s += np.where(hot, dt, 0.0)
        width_factor = self.link_width / self.link_width_max
        base = self.pcie_bw * width_factor * (0.002 + 0.05 * util)
        self.pcie_tx = np.round(base * rng.lognormal(0.0, 0.3, n))
        self.pcie_rx = np.round(base * 1.3 * rng.lognormal(0.0, 0.3, n))
        self.pcie_replay += rng.poisson(self.pcie_replay_rate * dt)
        # ECC: correctable errors as a Poisson process; 2 % of them cause a row remap / page retirement.
        sbe = rng.poisson(SBE_PER_DAY / 86400.0 * self.sbe_mult * dt)
        self.sbe_vol += sbe
        self.sbe_agg += sbe
        remap = rng.binomial(sbe, 0.02)
        self.rows_corr += remap
        self.retired_sbe += remap
        # NVLink traffic and CRC errors (link 0 carries the failure model's errors).
        if self.max_links:
            per_link = (self.link_bw * np.clip(act.nvlink, 0.0, 1.0) * util * dt)[:, None] * self.link_mask
            per_link = per_link * ~self.nvlink_down
            self.nvlink_tx += per_link
            self.nvlink_rx += per_link
            self.nvlink_crc[:, 0] += rng.poisson(self.nvlink_crc_rate * dt) * (self.links > 0)
        self.lost_power_zero()

    def lost_power_zero(self) -> None:
        """A GPU that fell off the bus reads nothing; keep its state frozen at idle."""
        if self.lost.any():
            self.util[self.lost] = 0.0
            self.sm_active[self.lost] = 0.0

    def reset(self, i: int) -> None:
        """A repaired / reset GPU: volatile counters clear, pending remaps take effect."""
        self.sbe_vol[i] = 0.0
        self.dbe_vol[i] = 0.0
        self.row_pending[i] = 0.0
        self.retired_pending[i] = 0.0
        self.lost[i] = False
        self.cooling_degrade[i] = 1.0
        self.sbe_mult[i] = 1.0
        self.pcie_replay_rate[i] = 1e-6
        self.nvlink_crc_rate[i] = 0.0
        self.nvlink_down[i] = False
        self.link_width[i] = self.link_width_max[i]
        self.row_failure[i] = 0.0
        self.temp_floor[i] = -np.inf


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _heat(share: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip((share - THERMAL_FLOOR) / (1.0 - THERMAL_FLOOR), 0.0, 1.5) ** THERMAL_EXP)
