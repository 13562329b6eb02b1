"""Shared synthetic telemetry for the store benchmarks (NVML-like quantised values)."""

from __future__ import annotations

import numpy as np
from gpufleet.exporter.schema import Device, Sample, Snapshot

# 40 device fields, quantised as NVML reports them (integer %, integer C, mW power, MHz clocks...).
FIELDS = [
    ("util_gpu", 0.01), ("util_memory", 0.01), ("temperature_gpu", 1.0), ("temperature_memory", 1.0),
    ("power_usage", 0.001), ("energy", 0.001), ("clock_sm", 1e6), ("clock_memory", 1e6),
    ("clock_graphics", 1e6), ("clock_video", 1e6), ("fb_used", 1048576.0), ("fb_free", 1048576.0),
    ("pcie_tx_bytes", 1024.0), ("pcie_rx_bytes", 1024.0), ("sm_active", 0.001), ("sm_occupancy", 0.001),
    ("tensor_active", 0.001), ("dram_active", 0.001), ("fan_speed", 0.01), ("pstate", 1.0),
    ("ecc_corrected_volatile", 1.0), ("ecc_uncorrected_volatile", 1.0), ("ecc_corrected_aggregate", 1.0),
    ("ecc_uncorrected_aggregate", 1.0), ("remapped_rows_correctable", 1.0), ("remapped_rows_uncorrectable", 1.0),
    ("row_remap_pending", 1.0), ("row_remap_failure", 1.0), ("clock_event_reasons", 1.0),
    ("throttle_power_seconds", 0.001), ("throttle_thermal_seconds", 0.001), ("power_limit", 1.0),
    ("power_limit_enforced", 1.0), ("fb_total", 1048576.0), ("bar1_used", 1048576.0), ("bar1_total", 1048576.0),
    ("temperature_slowdown", 1.0), ("temperature_shutdown", 1.0), ("clock_sm_max", 1e6), ("ecc_enabled", 1.0),
]
FIELD_NAMES = [f for f, _ in FIELDS]
QUANTUM = np.array([q for _, q in FIELDS])
SCALE = np.array([1, 1, 80, 90, 400, 1e9, 1.4e9, 1.6e9, 1.4e9, 1e9, 4e10, 4e10, 1e9, 1e9, 1, 1, 1, 1, 1, 8,
                  10, 1, 100, 1, 2, 1, 1, 1, 64, 1e4, 1e3, 400, 400, 8e10, 1e8, 2.7e8, 90, 95, 1.4e9, 1])


def devices(n_gpus: int, per_node: int = 8) -> list[Device]:
    return [Device(uuid=f"GPU-{i:05d}-bench", index=i % per_node, node=f"node{i // per_node:04d}", model="A100")
            for i in range(n_gpus)]


def values_matrix(rng: np.random.Generator, n_steps: int, n_gpus: int) -> np.ndarray:
    """(steps, gpus, fields) of slowly varying quantised values."""
    base = rng.uniform(0.3, 0.9, (1, n_gpus, len(FIELDS)))
    walk = np.cumsum(rng.normal(0, 0.01, (n_steps, n_gpus, len(FIELDS))), axis=0)
    v = np.clip(base + walk, 0, 1) * SCALE
    return np.round(v / QUANTUM) * QUANTUM


def snapshots(n_gpus: int, n_steps: int, interval: float, t0: float = 1_750_000_000.0, seed: int = 0,
              per_node: int = 8) -> list[Snapshot]:
    """One snapshot per node per interval, 40 fields per GPU plus up."""
    rng = np.random.default_rng(seed)
    devs = devices(n_gpus, per_node)
    vals = values_matrix(rng, n_steps, n_gpus)
    out = []
    for k in range(n_steps):
        ts = t0 + k * interval
        for node0 in range(0, n_gpus, per_node):
            nd = devs[node0:node0 + per_node]
            row = vals[k]
            out.append(Snapshot(ts=ts, node=nd[0].node, devices=nd,
                                samples=[Sample(d.uuid, f, float(row[node0 + i, j]), ts)
                                         for i, d in enumerate(nd) for j, f in enumerate(FIELD_NAMES)],
                                up={d.uuid: 1 for d in nd}))
    return out


def minute_table(day: int, n_gpus: int, n_fields: int = 10, t0_ms: int = 1_750_000_000_000 // 86_400_000
                 * 86_400_000, seed: int = 0, aggs: bool = True):  # type: ignore[no-untyped-def]
    """One day of 1-minute rollup rows (ts, uuid, n, <field>:min/mean/max/last) in the store's layout."""
    import pyarrow as pa

    rng = np.random.default_rng(seed + day)
    rows = 1440 * n_gpus
    ts = t0_ms + day * 86_400_000 + np.repeat(np.arange(1440, dtype=np.int64) * 60_000, n_gpus)
    codes = np.tile(np.arange(n_gpus, dtype=np.int32), 1440)
    names = [d.uuid for d in devices(n_gpus)]
    cols = {"ts": pa.array(ts), "uuid": pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)),
            "n": pa.array(np.full(rows, 6, np.int32))}
    for j in range(n_fields):
        f = FIELD_NAMES[j]
        mean = np.round(rng.uniform(0, SCALE[j], rows) / QUANTUM[j]) * QUANTUM[j]
        if not aggs:
            cols[f] = pa.array(mean)
            continue
        cols[f"{f}:min"] = pa.array(mean - QUANTUM[j])
        cols[f"{f}:mean"] = pa.array(mean)
        cols[f"{f}:max"] = pa.array(mean + QUANTUM[j])
        cols[f"{f}:last"] = pa.array(mean)
    return pa.table(cols)
