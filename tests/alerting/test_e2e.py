"""End to end: the twin feeds the exporter (native + dcgm names); a real Prometheus scrapes it and evaluates
the exported rules (both files);
a real Alertmanager routes to a webhook receiver on loopback. The same snapshots feed gpufleet's own
engine. A GPU overheats then cools, another falls off the bus: both sides raise the same alerts."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from gpufleet.alerting.engine import AlertEngine, EngineConfig, Notification
from gpufleet.alerting.export import export
from gpufleet.alerting.rules import load_rules
from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.base import Sink
from gpufleet.simulator.twin import TwinConfig, TwinSource

from tests.alerting.receiver import WebhookReceiver
from tests.exporter.harness import run_exporter
from tests.servers import Alertmanager, Prometheus, require_binary, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.server]

SPEED = 30.0  # simulated seconds per wall second: the overheat takes ~8 s to pass 85 °C
SHORT = {"GpuTemperatureHigh": {"for": "2s"}, "NodeGpuCountBelowInventory": {"for": "2s"},
         "GpuLost": {"for": "0s"}}
SCENARIO = {"GpuTemperatureHigh", "GpuLost", "NodeGpuCountBelowInventory", "GpuXidHardwareCritical"}


class EngineSink(Sink):
    """Feeds every snapshot of the exporter's loop to the engine, on the wall clock (as Prometheus)."""

    name = "alert-engine"

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine

    def write(self, snapshot: Snapshot) -> None:
        now = time.time()
        self.engine.step(replace(snapshot, ts=now), now=now)


def _key(labels: dict[str, str]) -> tuple[str, str]:
    return labels["alertname"], labels.get("uuid") or labels.get("node", "")


def test_twin_prometheus_alertmanager_and_engine_agree(tmp_path: Path) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    rules = load_rules(overrides=SHORT)
    receiver = WebhookReceiver()
    export(rules, tmp_path / "rules", "both", webhook_url=f"{receiver.url}/am", group_wait=1.0,
           group_interval=1.0, repeat_interval=3600.0)
    sent: list[Notification] = []
    engine = AlertEngine(rules, config=EngineConfig(group_interval=1.0, stale_after=10.0), notify=sent.append)
    source = TwinSource(TwinConfig(nodes=2, gpus_per_node=2, seed=3, failures=False, step_s=5.0), speed=SPEED)
    devs = source.devices()
    hot, lost = devs[0], devs[3]
    am = prom = None
    try:
        am = Alertmanager(tmp_path / "am", tmp_path / "rules" / "alertmanager.yml")
        with run_exporter(source, names="both", interval=1.0, sinks=[EngineSink(engine)]) as exp:
            now_sim = source.sim_time(time.time())
            source.twin.inject_fault(hot.uuid, "overheat", now_sim + 10, 600)
            source.twin.inject_fault(lost.uuid, "fall_off_bus", now_sim + 60)
            # both rule files: the native one and the dcgm-named one (on the exporter's dcgm series)
            prom = Prometheus(tmp_path / "prom", [exp.host_port], rule_files=[
                tmp_path / "rules" / "gpufleet-rules.yml", tmp_path / "rules" / "gpufleet-rules-dcgm.yml"],
                alertmanager=f"127.0.0.1:{am.port}")

            def am_seen() -> dict[tuple[str, str], set[str]]:
                seen: dict[tuple[str, str], set[str]] = {}
                for body in list(receiver.bodies):
                    for a in body["alerts"]:
                        if a["labels"]["alertname"] in SCENARIO:
                            seen.setdefault(_key(a["labels"]), set()).add(a["status"])
                return seen

            def engine_seen() -> dict[tuple[str, str], set[str]]:
                seen: dict[tuple[str, str], set[str]] = {}
                for n in list(sent):
                    for a in n.firing + n.resolved:
                        if a.labels["alertname"] in SCENARIO:
                            seen.setdefault(_key(a.labels), set()).add(a.state)
                return seen

            expected = {("GpuTemperatureHigh", hot.uuid): {"firing", "resolved"},
                        ("GpuLost", lost.uuid): {"firing"},
                        ("NodeGpuCountBelowInventory", lost.node): {"firing"}}

            def dcgm_temp() -> set[str]:  # GpuTemperatureHigh from the dcgm-named rule (it has UUID)
                return {a["status"] for b in list(receiver.bodies) for a in b["alerts"]
                        if a["labels"]["alertname"] == "GpuTemperatureHigh" and a["labels"].get("UUID") == hot.uuid
                        and a["labels"].get("node") == hot.node and a["labels"].get("uuid") == hot.uuid}

            def both_done() -> bool:
                a, e = am_seen(), engine_seen()
                return all(v <= a.get(k, set()) and v <= e.get(k, set()) for k, v in expected.items()) \
                    and dcgm_temp() == {"firing", "resolved"}

            wait_until(both_done, 90, "the scenario's alerts on both sides", interval=0.5)
        on_ours = {k for k in engine_seen() if k[1] in (hot.uuid, lost.uuid, lost.node)}
        on_theirs = {k for k in am_seen() if k[1] in (hot.uuid, lost.uuid, lost.node)}
        assert on_ours == on_theirs
        assert set(expected) <= on_ours
        # the webhook carried the exported rule's annotations (rendered by Prometheus)
        temp = next(a for b in receiver.bodies for a in b["alerts"]
                    if a["labels"]["alertname"] == "GpuTemperatureHigh")
        assert temp["annotations"]["remediation"].startswith("Check fans")
        assert temp["labels"]["severity"] == "warning" and temp["labels"]["node"] == hot.node
    finally:
        if prom is not None:
            prom.stop()
        if am is not None:
            am.stop()
        receiver.stop()
