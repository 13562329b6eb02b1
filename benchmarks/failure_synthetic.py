"""Synthetic telemetry panels for the failure benchmarks (shapes and costs only, not accuracy)."""

from __future__ import annotations

import numpy as np
from gpufleet.analytics.datasets import Panel

FIELDS = ("temperature_gpu", "power_usage", "util_gpu", "clock_sm", "ecc_corrected_volatile",
          "ecc_uncorrected_volatile", "row_remap_pending", "pcie_replay")
T0 = 1_767_225_600.0


def synthetic_panel(gpus: int, minutes: int, seed: int = 0, fail_share: float = 0.05) -> tuple[Panel, dict]:
    """A prepared panel (counters already increments) and failure times with a 12 h ECC precursor."""
    rng = np.random.default_rng(seed)
    v = np.empty((gpus, minutes, len(FIELDS)), dtype=np.float32)
    v[:, :, 0] = 55 + 10 * rng.random((gpus, 1), dtype=np.float32) + rng.standard_normal((gpus, minutes), np.float32)
    v[:, :, 1] = 300 * rng.random((gpus, minutes), dtype=np.float32)
    v[:, :, 2] = rng.random((gpus, minutes), dtype=np.float32)
    v[:, :, 3] = 1.4e9
    v[:, :, 4] = rng.poisson(0.01, (gpus, minutes))
    v[:, :, 5] = 0
    v[:, :, 6] = 0
    v[:, :, 7] = np.nan  # unsupported on this fleet: masked
    times = T0 + 60.0 * np.arange(minutes)
    uuids = [f"GPU-{i:05d}" for i in range(gpus)]
    failures = {}
    for g in np.flatnonzero(rng.random(gpus) < fail_share):
        k = int(rng.integers(minutes // 4, minutes))
        failures[uuids[g]] = np.array([times[k]])
        lo = max(k - 720, 0)
        v[g, lo:k, 4] += rng.poisson(0.5, k - lo)
        v[g, lo:k, 6] = 1
    return Panel(uuids, times, FIELDS, v), failures
