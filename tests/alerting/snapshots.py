"""Hand-built snapshots for alerting tests: a node of GPUs with chosen field values."""

from __future__ import annotations

from gpufleet.exporter.schema import CollectorStat, Device, Sample, Snapshot


def gpu_uuid(node: str, i: int) -> str:
    return f"GPU-{node}-{i:02d}"


def snapshot(ts: float, node: str = "n1", gpus: int = 2, *, temp: float | dict[int, float] = 60.0,
             up: dict[int, int] | None = None, xid: dict[int, dict[int, int]] | None = None,
             extra: list[Sample] | None = None, fields: dict[str, dict[int, float]] | None = None) -> Snapshot:
    """One node's snapshot: ``temp`` for all GPUs or per index, ``up`` overrides, ``xid`` counts per index."""
    devices = [Device(uuid=gpu_uuid(node, i), index=i, node=node, model="NVIDIA H100 80GB HBM3")
               for i in range(gpus)]
    samples: list[Sample] = []
    for d in devices:
        t = temp.get(d.index, 60.0) if isinstance(temp, dict) else temp
        samples.append(Sample(d.uuid, "temperature_gpu", t, ts))
        samples.append(Sample(d.uuid, "ecc_uncorrected_volatile", 0.0, ts))
        samples.append(Sample(d.uuid, "power_usage", 300.0, ts))
        for code, count in (xid or {}).get(d.index, {}).items():
            samples.append(Sample(d.uuid, "xid_errors", float(count), ts, (("xid", str(code)),)))
        for field_id, per in (fields or {}).items():
            if d.index in per:
                samples.append(Sample(d.uuid, field_id, per[d.index], ts))
    samples += extra or []
    up_map = {d.uuid: 1 for d in devices}
    for i, v in (up or {}).items():
        up_map[gpu_uuid(node, i)] = v
    lost = {u for u, v in up_map.items() if v == 0}
    samples = [s for s in samples if s.uuid not in lost]
    stats = [CollectorStat("thermal", 0.01, True, ts)]
    return Snapshot(ts=ts, node=node, devices=devices, samples=samples, up=up_map, stats=stats)
