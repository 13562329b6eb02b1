"""The twin as a source: catalogue fields and units, absent unsupported fields, determinism, real time."""

from __future__ import annotations

from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.schema import EventKind
from gpufleet.simulator.twin import Twin, TwinConfig, TwinSource

T0 = 1_700_000_000.0


def _models(twin: Twin) -> dict[str, str]:
    return {g.uuid: g.spec.model for g in twin.slots}


def test_one_snapshot_per_node_per_step_with_catalogue_fields() -> None:
    twin = Twin(TwinConfig(nodes=3, gpus_per_node=2, seed=1))
    snaps = list(twin.run(T0, 600, 60))
    assert len(snaps) == 10 * 3
    assert [s.node for s in snaps[:3]] == [n.name for n in twin.nodes]
    cat = catalogue()
    for s in snaps:
        assert len(s.up) == 2 and set(s.up.values()) == {1}
        for x in s.samples:
            m = cat.field(x.field)  # KeyError if not in the catalogue
            assert m.scope == "device"
            assert tuple(k for k, _ in x.labels) == tuple(sorted(m.labels)) or x.field == "info"
            if m.unit == "ratio":
                assert 0.0 <= x.value <= 1.0
            if m.is_counter:
                assert x.value >= 0


def test_unsupported_fields_are_absent() -> None:
    twin = Twin(TwinConfig(nodes=3, gpus_per_node=1, seed=2))
    snaps = list(twin.run(T0, 120, 60))
    models = _models(twin)
    by_model: dict[str, set[str]] = {}
    for s in snaps:
        for x in s.samples:
            by_model.setdefault(models[x.uuid], set()).add(x.field)
    a100, h100, l40s = by_model["A100-SXM4-80GB"], by_model["H100-SXM5-80GB"], by_model["L40S"]
    assert "prof_sm_active" in h100 and "prof_sm_active" not in a100 and "prof_sm_active" not in l40s
    assert "temperature_memory" in a100 and "temperature_memory" not in l40s
    assert "nvlink_up" in a100 and "nvlink_up" not in l40s
    assert "remapped_rows_correctable" in a100 and "retired_pages_sbe" not in a100
    assert "util_encoder" not in a100 and "util_encoder" not in h100 and "util_encoder" in l40s
    assert not any("fan_speed" in f for f in a100 | h100 | l40s)  # passively cooled boards
    assert {"power_usage", "temperature_gpu", "util_gpu", "energy", "fb_used"} <= a100 & h100 & l40s


def test_base_units_and_physics_relations() -> None:
    twin = Twin(TwinConfig(nodes=1, gpus_per_node=8, seed=3, models=("A100-SXM4-80GB",)))
    snaps = list(twin.run(T0, 3660, 60))
    first, last = snaps[0], snaps[-1]
    for d in last.devices:
        power, limit = last.value(d.uuid, "power_usage"), last.value(d.uuid, "power_limit")
        assert power is not None and limit == 400.0 and 30 < power <= limit
        used, free, total = (last.value(d.uuid, f) for f in ("fb_used", "fb_free", "fb_total"))
        assert used is not None and free is not None and total is not None
        assert abs(used + free - total) < 2**21 and total > 70e9  # bytes, not MiB
        assert last.value(d.uuid, "clock_sm_max") == 1410e6  # hertz
        e0, e1 = first.value(d.uuid, "energy"), last.value(d.uuid, "energy")
        assert e0 is not None and e1 is not None and 50 * 3600 < e1 - e0 <= 400 * 3600  # joules over an hour


def test_same_seed_same_output_different_seed_differs() -> None:
    def fingerprint(seed: int) -> list[tuple[str, str, float]]:
        tw = Twin(TwinConfig(nodes=2, gpus_per_node=4, seed=seed, failure_rate_multiplier=500))
        return [(x.uuid, x.field, x.value) for s in tw.run(T0, 7200, 60) for x in s.samples]
    a, b = fingerprint(5), fingerprint(5)
    assert a == b
    assert a != fingerprint(6)


def test_twin_source_follows_the_clock_at_a_speed() -> None:
    src = TwinSource(TwinConfig(nodes=2, gpus_per_node=2, seed=4), start=T0, speed=60.0)
    with src:
        first = src.collect(1000.0)
        assert first.ts == T0 and len(first.up) == 4 and len(src.devices()) == 4
        later = src.collect(1010.0)  # ten real seconds at 60x: ten simulated minutes
        assert later.ts == T0 + 600 and src.twin.now == T0 + 600
        e0 = {x.uuid: x.value for x in first.samples if x.field == "energy"}
        e1 = {x.uuid: x.value for x in later.samples if x.field == "energy"}
        assert all(e1[u] > e0[u] for u in e0)
    one = TwinSource(TwinConfig(nodes=2, gpus_per_node=2, seed=4), node="twin-node-001")
    snap = one.collect(T0)
    assert {d.node for d in snap.devices} == {"twin-node-001"}


def test_job_events_and_jobs() -> None:
    twin = Twin(TwinConfig(nodes=2, gpus_per_node=8, seed=5, job_events=True, fields="history"))
    kinds = {e.kind for s in twin.run(T0, 4 * 3600, 60) for e in s.events}
    assert EventKind.JOB_START in kinds and EventKind.JOB_END in kinds
    assert any(j.state == "done" for j in twin.jobs)
    quiet = Twin(TwinConfig(nodes=2, gpus_per_node=8, seed=5, fields="history"))
    assert not any(e.kind.value.startswith("job_") for s in quiet.run(T0, 3600, 60) for e in s.events)
