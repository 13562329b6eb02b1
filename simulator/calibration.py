"""Compare the twin's fleet distributions with the AcmeTrace A100 CDFs (Kolmogorov-Smirnov distance).

The reference is ``../shared/data/acme-trace-cdfs/cdf_csv``: 1,000 quantile points per metric from
the Seren cluster (A100 80 GB SXM): GPU utilization % (``util_gpu_seren.csv`` x1), SM activity %
(x3), GPU temperature C (``gpu_temp_seren.csv`` x1) and GPU power W (``gpu_power_seren.csv`` x1).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gpufleet.exporter.errors import InputError

# metric -> (file, column, scale from the twin's base unit to the file's unit)
REFERENCE = {
    "util_gpu": ("util_gpu_seren.csv", "x1", 100.0),
    "sm_active": ("util_gpu_seren.csv", "x3", 100.0),
    "temperature_gpu": ("gpu_temp_seren.csv", "x1", 1.0),
    "power_usage": ("gpu_power_seren.csv", "x1", 1.0),
}


def load_reference(folder: str | Path, metric: str) -> np.ndarray:
    """The reference quantile points of one metric (in the file's unit)."""
    fname, col, _ = REFERENCE[metric]
    path = Path(folder) / fname
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if col not in (reader.fieldnames or []):
            raise InputError(f"expected a column {col!r}", path=str(path), line=1)
        for lineno, row in enumerate(reader, start=2):
            try:
                out.append(float(row[col]))
            except (TypeError, ValueError):
                raise InputError(f"expected a number, got {row[col]!r}", path=str(path), line=lineno,
                                 column=col) from None
    return np.sort(np.array(out))


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


@dataclass
class FleetSample:
    """Per-GPU, per-step values collected from a twin run (physics state, base units)."""

    util_gpu: np.ndarray
    sm_active: np.ndarray
    temperature_gpu: np.ndarray
    power_usage: np.ndarray


def sample_fleet(nodes: int = 8, days: float = 3.0, seed: int = 0, step_s: float = 60.0,
                 warmup_days: float = 0.5) -> FleetSample:
    """Run an A100-only twin and collect the four metrics every step (after the twin's warm-up)."""
    from gpufleet.simulator.twin import Twin, TwinConfig

    twin = Twin(TwinConfig(nodes=nodes, seed=seed, failures=False, models=("A100-SXM4-80GB",),
                           warmup_s=warmup_days * 86400))
    start = 1_700_000_000.0
    twin.begin(start)
    ph = twin.physics
    cols: dict[str, list[np.ndarray]] = {k: [] for k in REFERENCE}
    n_steps = int(days * 86400 / step_s)
    for k in range(1, n_steps + 1):
        twin.advance(start + k * step_s)
        cols["util_gpu"].append(ph.util.copy())
        cols["sm_active"].append(ph.sm_active.copy())
        cols["temperature_gpu"].append(np.round(ph.temp))
        cols["power_usage"].append(ph.power.copy())
    return FleetSample(**{k: np.concatenate(v) for k, v in cols.items()})


def ks_report(folder: str | Path, fleet: FleetSample) -> dict[str, float]:
    """KS distance per metric between the twin's fleet sample and the AcmeTrace reference."""
    out = {}
    for metric, (_f, _c, scale) in REFERENCE.items():
        ref = load_reference(folder, metric)
        out[metric] = ks_distance(getattr(fleet, metric) * scale, ref)
    return out
