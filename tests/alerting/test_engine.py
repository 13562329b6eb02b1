"""Engine behaviour on hand-built snapshots: states, hysteresis, grouping, dedup, repeat, inhibition,
silences, persistence across restarts, and keeping the last good rules."""

from __future__ import annotations

import os
from pathlib import Path

from gpufleet.alerting.engine import AlertEngine, EngineConfig, Notification
from gpufleet.alerting.rules import load_rules
from gpufleet.alerting.silences import SilenceStore, parse_matcher

from tests.alerting.snapshots import gpu_uuid, snapshot

FAST = {"GpuTemperatureHigh": {"for": "20s"}}


def _engine(tmp: Path | None = None, **cfg: float) -> tuple[AlertEngine, list[Notification]]:
    sent: list[Notification] = []
    config = EngineConfig(group_interval=cfg.get("group_interval", 0.0),
                          repeat_interval=cfg.get("repeat_interval", 3600.0), stale_after=30.0, startup_grace=30.0)
    e = AlertEngine(load_rules(overrides=FAST), config=config, state_dir=tmp, notify=sent.append)
    return e, sent


def test_pending_firing_resolved_with_hysteresis() -> None:
    e, sent = _engine()
    states = []
    for t, temp in [(0, 60), (10, 90), (20, 90), (30, 90), (40, 83), (50, 79)]:
        e.step(snapshot(t, temp={0: temp}), now=t)
        a = next((a for a in e.alerts.values() if a.rule == "GpuTemperatureHigh"), None)
        states.append(a.state if a else "inactive")
    assert states == ["inactive", "pending", "pending", "firing", "firing", "resolved"]
    assert [(n.status, len(n.firing), len(n.resolved)) for n in sent] == [("firing", 1, 0), ("resolved", 0, 1)]
    fired = sent[0].firing[0]
    assert fired.labels["uuid"] == gpu_uuid("n1", 0) and fired.labels["node"] == "n1"
    assert fired.annotations["summary"] == "GPU 0 on n1 is at 90 °C (above 85 °C for 20s)"


def test_pending_alert_that_clears_never_notifies() -> None:
    e, sent = _engine()
    for t, temp in [(0, 90), (10, 90), (20, 70), (30, 70)]:
        e.step(snapshot(t, temp={0: temp}), now=t)
    assert sent == [] and not e.alerts


def test_grouping_dedup_and_repeat() -> None:
    e, sent = _engine(repeat_interval=100.0)
    for t in range(0, 60, 10):
        e.step(snapshot(t, gpus=4, temp={0: 90, 1: 91, 2: 92}), now=t)
    # three GPUs of one node: one notification for the group, sent once
    assert len(sent) == 1 and len(sent[0].firing) == 3
    assert sent[0].group_labels == {"alertname": "GpuTemperatureHigh", "node": "n1"}
    for t in range(60, 140, 10):
        e.step(snapshot(t, gpus=4, temp={0: 90, 1: 91, 2: 92}), now=t)
    assert len(sent) == 2  # the repeat after repeat_interval, nothing in between


def test_group_interval_batches_new_alerts() -> None:
    e, sent = _engine(group_interval=60.0)
    for t in range(0, 40, 10):
        e.step(snapshot(t, gpus=4, temp={0: 90}), now=t)
    assert len(sent) == 1
    for t in range(40, 80, 10):
        e.step(snapshot(t, gpus=4, temp={0: 90, 1: 90}), now=t)
    assert len(sent) == 1  # GPU 1 fired at 60 s, but the group notified at 30 s
    e.step(snapshot(90, gpus=4, temp={0: 90, 1: 90}), now=90)
    assert len(sent) == 2 and len(sent[1].firing) == 2


def test_critical_inhibits_same_gpu_warning() -> None:
    e, sent = _engine()
    for t in range(0, 40, 10):
        e.step(snapshot(t, gpus=2, temp={0: 90, 1: 90}, xid={0: {79: 1}} if t >= 10 else None), now=t)
    temp = {a.labels["uuid"]: a for a in e.firing() if a.rule == "GpuTemperatureHigh"}
    assert temp[gpu_uuid("n1", 0)].muted_by.startswith("inhibited")
    assert temp[gpu_uuid("n1", 1)].muted_by == ""
    notified = {(a.rule, a.labels["uuid"]) for n in sent for a in n.firing}
    assert ("GpuTemperatureHigh", gpu_uuid("n1", 0)) not in notified
    assert ("GpuTemperatureHigh", gpu_uuid("n1", 1)) in notified
    assert ("GpuXidHardwareCritical", gpu_uuid("n1", 0)) in notified


def test_node_down_inhibits_its_gpu_alerts() -> None:
    e, sent = _engine()
    for t in range(0, 40, 10):  # n1: a hot GPU firing; n2 fine
        e.step([snapshot(t, "n1", temp={0: 90}), snapshot(t, "n2")], now=t)
    assert [a.rule for n in sent for a in n.firing] == ["GpuTemperatureHigh"]
    for t in range(40, 200, 10):  # n1's exporter stops
        e.step([snapshot(t, "n2")], now=t)
    down = [a for a in e.firing() if a.rule == "GpufleetExporterDown"]
    assert len(down) == 1 and down[0].labels["node"] == "n1" and down[0].labels["scope"] == "node"
    assert any(a.rule == "GpufleetExporterDown" for n in sent for a in n.firing)
    # the GPU alert of n1 cannot be re-evaluated (no data): kept, and muted by the node-down alert
    hot = [a for a in e.alerts.values() if a.rule == "GpuTemperatureHigh"]
    assert all(a.state == "resolved" or a.muted_by.startswith("inhibited") for a in hot)


def test_silence_mutes_until_its_end(tmp_path: Path) -> None:
    e, sent = _engine(tmp_path)
    store = SilenceStore(tmp_path / "silences.json")
    store.add([parse_matcher("alertname=GpuTemperatureHigh"), parse_matcher("node=n1")], 0, 100, now=0,
              created_by="test", comment="maintenance")
    for t in range(0, 100, 10):
        e.step(snapshot(t, temp={0: 90}), now=t)
    assert sent == []
    assert e.firing()[0].muted_by.startswith("silenced")
    e.step(snapshot(100, temp={0: 90}), now=100)
    assert len(sent) == 1  # the silence ended: the still-firing alert is notified now


def test_expired_silence(tmp_path: Path) -> None:
    store = SilenceStore(tmp_path / "silences.json")
    s = store.add([parse_matcher("node=~n.*")], 0, 1000, now=0)
    assert store.silencing({"node": "n7"}, 10) is not None
    store.expire(s.id, now=20)
    assert store.silencing({"node": "n7"}, 30) is None
    assert store.all()[0].ends_at == 20


def test_restart_neither_repages_nor_forgets(tmp_path: Path) -> None:
    e, sent = _engine(tmp_path)
    for t in range(0, 40, 10):
        e.step(snapshot(t, temp={0: 90}), now=t)
    assert len(sent) == 1
    # restart: a new engine on the same state folder
    e2, sent2 = _engine(tmp_path)
    assert [a.state for a in e2.alerts.values()] == ["firing"]
    for t in range(40, 80, 10):
        e2.step(snapshot(t, temp={0: 90}), now=t)
    assert sent2 == []  # not paged again
    e2.step(snapshot(80, temp={0: 70}), now=80)
    assert [n.status for n in sent2] == ["resolved"]  # and not forgotten


def test_bad_reload_keeps_last_good_rules(tmp_path: Path) -> None:
    rule_file = tmp_path / "extra.yaml"
    good = ("rules:\n  - name: GpuPowerHigh\n    metric: gpufleet_gpu_power_usage_watts\n    op: '>'\n"
            "    threshold: 250\n    severity: warning\n    annotations: {summary: hot, remediation: cool}\n")
    rule_file.write_text(good)
    e = AlertEngine(load_rules([rule_file]), reload=lambda: load_rules([rule_file]),
                    config=EngineConfig(group_interval=0))
    rule_file.write_text(good.replace("threshold: 250", "threshold: lots"))
    os.utime(rule_file, (1, 1))  # a changed mtime: the next step reloads, fails, keeps the good rules
    e.step(snapshot(0), now=0)
    assert e.reload_error is not None and "GpuPowerHigh" in e.reload_error and ":5" in e.reload_error
    assert any(a.rule == "GpuPowerHigh" for a in e.firing())
    rule_file.write_text(good.replace("threshold: 250", "threshold: 350"))
    e.step(snapshot(10), now=10)
    assert e.reload_error is None and not any(a.rule == "GpuPowerHigh" for a in e.firing())


def test_firing_gauge_in_a_registry() -> None:
    from gpufleet.alerting.metrics import EngineCollector
    from prometheus_client import CollectorRegistry, generate_latest

    e, _ = _engine()
    for t in range(0, 40, 10):
        e.step(snapshot(t, gpus=3, temp={0: 90, 2: 95}), now=t)
    reg = CollectorRegistry()
    reg.register(EngineCollector(e))
    text = generate_latest(reg).decode()
    assert 'gpufleet_alerts_firing{alertname="GpuTemperatureHigh",severity="warning"} 2.0' in text


def test_restart_keeps_a_fleet_alert_until_its_metric_reports(tmp_path: Path) -> None:
    from gpufleet.exporter.schema import Sample, Snapshot

    def queue(ts: float, wait: float) -> Snapshot:
        return Snapshot(ts=ts, node="scheduler", samples=[
            Sample("", "queue_wait_seconds", wait, ts, (("priority", "high"),))])

    rules = load_rules(overrides={"QueueBacklog": {"for": "0s"}})
    sent: list[Notification] = []
    cfg = EngineConfig(group_interval=0, startup_grace=60)
    e = AlertEngine(rules, config=cfg, state_dir=tmp_path, notify=sent.append, clock=lambda: 0.0)
    e.step(queue(0, 7200), now=0)
    assert [a.labels["alertname"] for n in sent for a in n.firing] == ["QueueBacklog"]
    assert "node" not in sent[0].firing[0].labels
    sent2: list[Notification] = []
    e2 = AlertEngine(rules, config=cfg, state_dir=tmp_path, notify=sent2.append, clock=lambda: 100.0)
    e2.step([snapshot(100, "n1")], now=100)  # GPU data first: the queue metric has not reported yet
    assert sent2 == [] and e2.firing()[0].rule == "QueueBacklog"
    e2.step(queue(110, 60), now=110)
    assert [n.status for n in sent2] == ["resolved"]


def test_clock_reasons_from_the_bitmask_match_the_per_reason_series() -> None:
    from gpufleet.exporter.schema import Sample

    def snap(t: float, with_mask: bool) -> object:
        s = snapshot(t, gpus=3)
        masks = {0: 0x40, 1: 0x4 | 0x1, 2: 0x0}  # GPU 0 hw thermal, GPU 1 power cap + idle, GPU 2 none
        for i, m in masks.items():
            uuid = gpu_uuid("n1", i)
            for reason, bit in (("hw_thermal_slowdown", 0x40), ("sw_power_cap", 0x4), ("gpu_idle", 0x1)):
                s.samples.append(Sample(uuid, "clock_event_active", 1.0 if m & bit else 0.0, t,
                                        (("reason", reason),)))
            if with_mask:
                s.samples.append(Sample(uuid, "clock_event_reasons", float(m), t))
        return s

    over = {"GpuThermalThrottling": {"for": "0s"}, "GpuPowerThrottling": {"for": "0s"}}
    results = []
    for with_mask in (False, True):
        e = AlertEngine(load_rules(overrides=over), config=EngineConfig(group_interval=0))
        for t in (0, 10, 20):
            e.step(snap(t, with_mask), now=t)  # type: ignore[arg-type]
        results.append(sorted((a.rule, a.labels["uuid"], a.labels["reason"]) for a in e.firing()))
    assert results[0] == results[1] == [
        ("GpuPowerThrottling", gpu_uuid("n1", 1), "sw_power_cap"),
        ("GpuThermalThrottling", gpu_uuid("n1", 0), "hw_thermal_slowdown")]
