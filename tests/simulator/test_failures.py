"""Failures: injected scenarios, labels kept apart, interrupted jobs, rates re-derived from the data."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from gpufleet.exporter.schema import EventKind
from gpufleet.simulator import failures as fm
from gpufleet.simulator.twin import Twin, TwinConfig

from tests.servers import require_data

T0 = 1_700_000_000.0


def test_overheat_crosses_slowdown_throttles_and_returns() -> None:
    twin = Twin(TwinConfig(nodes=1, gpus_per_node=2, seed=1, failures=False, models=("A100-SXM4-80GB",)))
    uuid = twin.slots[0].uuid
    twin.inject_fault(uuid, "overheat", T0 + 600, duration=1200)
    temps, reasons = [], []
    for s in twin.run(T0, 3600, 60):
        temps.append(s.value(uuid, "temperature_gpu"))
        reasons.append(int(s.value(uuid, "clock_event_reasons") or 0))
    slowdown = twin.slots[0].spec.slowdown_c
    hot = [t for t in temps[10:31] if t is not None and t >= slowdown]
    assert hot, "temperature must pass the slowdown threshold"
    assert any(r & 0x20 for r in reasons[10:31])  # sw thermal slowdown bit
    assert max(t for t in temps[-10:] if t is not None) < slowdown - 10  # back to normal
    assert not any(r & 0x20 for r in reasons[-10:])
    assert twin.labels == []  # an injected overheat is a scenario, not a failure


def test_fall_off_bus_loses_the_gpu_labels_apart_and_interrupts_jobs() -> None:
    twin = Twin(TwinConfig(nodes=1, gpus_per_node=8, seed=2, failures=False, job_events=True))
    # Keep the GPU busy: wait until a job runs on it, then pull it off the bus.
    snaps = list(twin.run(T0, 4 * 3600, 60))
    busy = [g for g in range(8) if twin.cluster.procs[g] > 0]
    assert busy
    uuid = twin.slots[busy[0]].uuid
    assert twin.now is not None
    at = twin.now + 60
    twin.inject_fault(uuid, "fall_off_bus", at)
    snaps = list(twin.run(at, 600, 60))
    events = [e for s in snaps for e in s.events]
    xids = [e for e in events if e.kind == EventKind.XID and e.uuid == uuid]
    assert [e.code for e in xids] == [79]
    assert any(e.kind == EventKind.GPU_LOST and e.uuid == uuid for e in events)
    assert any(e.kind == EventKind.JOB_INTERRUPTED for e in events)
    assert not any(e.kind == EventKind.FAILURE for e in events)  # labels never in telemetry
    assert [(lab.uuid, lab.detail["mode"], lab.code) for lab in twin.labels] == [(uuid, "fall_off_bus", 79)]
    last = snaps[-1]
    assert last.up[uuid] == 0 and not [x for x in last.samples if x.uuid == uuid and x.field != "xid_errors"]
    assert last.value(twin.slots[busy[0] ^ 1].uuid, "power_usage") is not None


@pytest.mark.slow
def test_accelerated_rates_give_every_mode_and_precursors_show_in_telemetry() -> None:
    twin = Twin(TwinConfig(nodes=4, gpus_per_node=8, seed=3, failure_rate_multiplier=20000, fields="history",
                           step_s=300))
    sbe_seen = 0.0
    for s in twin.run(T0, 3 * 86400, 300):
        sbe_seen = max(sbe_seen, max((x.value for x in s.samples if x.field == "ecc_corrected_volatile"), default=0))
    modes = Counter(str(lab.detail["mode"]) for lab in twin.labels)
    assert len(twin.labels) >= 10
    assert {"ecc_dbe", "fall_off_bus"} <= set(modes)
    assert modes["ecc_dbe"] + modes["fall_off_bus"] > len(twin.labels) / 2
    assert all(lab.kind == EventKind.FAILURE for lab in twin.labels)
    assert any(lab.detail["precursor"] for lab in twin.labels)
    assert sbe_seen > 5  # rising correctable errors before some DBEs


def test_rate_mix_and_repeat_constants_match_infinitehbd() -> None:
    trace = json.loads(require_data("infinitehbd-faults", "infinitehbd_fault_trace.json").read_text())
    gpu = sorted((e for e in trace if e["event_type"] == "fault_start" and e["fault_type"]["Class"] == "GPU"),
                 key=lambda e: e["event_time"])
    span = max(e["event_time"] for e in trace)
    assert abs(fm.BASE_RATE_PER_GPU_DAY * 400 * 8 * span - len(gpu)) < 1
    seen: set[str] = set()
    repeats = 0
    for e in gpu:
        repeats += e["node_id"] in seen
        seen.add(e["node_id"])
    assert abs(fm.REPEAT_PROB - repeats / len(gpu)) < 0.01
    dbe = sum("ECC" in e["fault_type"]["Desc"] or "Silent" in e["fault_type"]["Desc"] for e in gpu)
    assert dbe == fm.MIX["ecc_dbe"] and sum(fm.MIX.values()) == len(gpu)


def test_age_and_slot_hazards_match_titan() -> None:
    s = pd.read_csv(require_data("titan-gpu-lifetimes", "gc_summary_loc.csv"))
    overall = s.dead.sum() / (s.days.sum() / 365)
    g = s.groupby("slot").agg(dead=("dead", "sum"), days=("days", "sum"))
    by_slot = (g["dead"] / (g["days"] / 365)).to_numpy() / overall
    assert np.allclose(by_slot, fm.SLOT_HAZARD, atol=0.01)
    days, dead = s.days.to_numpy(), s.dead.to_numpy()
    for year, rate in enumerate(fm.TITAN_AGE_RATE):
        exposure = np.clip(days - 365 * year, 0, 365).sum() / 365
        events = ((days >= 365 * year) & (days < 365 * (year + 1)) & dead).sum()
        assert abs(events / exposure - rate) < 0.001


def test_cooling_degradation_heats_the_gpu_then_fails_it() -> None:
    twin = Twin(TwinConfig(nodes=1, gpus_per_node=8, seed=4, failures=False, fields="history",
                           models=("A100-SXM4-80GB",)))
    uuid = twin.slots[6].uuid
    twin.inject_fault(uuid, "cooling_degradation", T0, duration=12 * 3600)
    temps = [s.value(uuid, "temperature_gpu") for s in twin.run(T0, 13 * 3600, 300)]
    seen = [t for t in temps if t is not None]
    assert max(seen[len(seen) // 2:]) > max(seen[: len(seen) // 4])  # hotter as the cooling degrades
    assert [(lab.detail["mode"], lab.detail["precursor"], lab.detail["onset"]) for lab in twin.labels] == [
        ("thermal", True, T0)]
    assert twin.physics.lost[6]
