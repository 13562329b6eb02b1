"""Synthetic snapshots for the store tests (deterministic values that tests can recompute)."""

from __future__ import annotations

from gpufleet.exporter.schema import Device, Event, EventKind, Sample, Snapshot

T0 = 1_750_000_000.0  # aligned to neither a minute nor an hour on purpose


def devices(n: int = 4, node: str = "node-a") -> list[Device]:
    return [Device(uuid=f"GPU-{node}-{i}", index=i, node=node, model="NVIDIA A100-SXM4-80GB",
                   memory_total_bytes=80 * 2**30) for i in range(n)]


def value(k: int, i: int, field: str) -> float:
    """The value of field ``field`` of GPU ``i`` at cycle ``k``."""
    base = {"temperature_gpu": 40.0, "power_usage": 100.0, "util_gpu": 0.0}.get(field, 1.0)
    return base + (k * 7 + i * 3) % 11 + 0.25 * i


def snapshot(k: int, devs: list[Device], interval: float = 10.0, t0: float = T0) -> Snapshot:
    ts = t0 + k * interval
    samples = [Sample(d.uuid, f, value(k, i, f), ts) for i, d in enumerate(devs)
               for f in ("temperature_gpu", "power_usage")]
    # util_gpu only on even GPUs: absent on the others
    samples += [Sample(d.uuid, "util_gpu", value(k, i, "util_gpu"), ts) for i, d in enumerate(devs) if i % 2 == 0]
    samples += [Sample(devs[0].uuid, "nvlink_bandwidth", float(k), ts, (("link", "1"),))]
    events = [Event(ts, EventKind.XID, devs[1].uuid, devs[1].node, 31, {"msg": "mmu fault"})] if k % 50 == 5 else []
    return Snapshot(ts=ts, node=devs[0].node, devices=devs, samples=samples, events=events,
                    up={d.uuid: 1 for d in devs})
