"""The twin's samples pass the same checks as NVML: promtool on the exposition, a real Prometheus scrape."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from gpufleet.exporter.catalogue import catalogue
from gpufleet.simulator.twin import TwinConfig, TwinSource

from tests.exporter.harness import run_exporter
from tests.servers import Prometheus, require_binary, wait_until


@pytest.mark.server
def test_twin_exposition_passes_promtool_and_prometheus_scrapes_it(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    src = TwinSource(TwinConfig(nodes=3, gpus_per_node=2, seed=7), speed=60.0)
    with run_exporter(src, names="native", interval=1.0) as exp:
        text = httpx.get(exp.url, timeout=10).text
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
        problems = [ln for ln in (check.stdout + check.stderr).decode().splitlines() if ln.strip()]
        assert check.returncode == 0 and problems == []
        for name in ("gpufleet_gpu_power_usage_watts", "gpufleet_gpu_temperature_celsius",
                     "gpufleet_gpu_energy_joules_total", "gpufleet_gpu_sm_active_ratio", "gpufleet_gpu_up"):
            assert name in text
        prom = Prometheus(tmp_path / "prom", [exp.host_port], interval="1s")
        try:
            up = prom.wait_for("gpufleet_gpu_up", timeout=60)
            assert {r["metric"]["uuid"] for r in up} == {d.uuid for d in src.devices()}
            assert {r["metric"]["model"] for r in up} == {"A100-SXM4-80GB", "H100-SXM5-80GB", "L40S"}
            # GPM metrics exist only on the Hopper GPUs, as on real hardware.
            sm = prom.wait_for("gpufleet_gpu_sm_active_ratio", timeout=30)
            assert {r["metric"]["model"] for r in sm} == {"H100-SXM5-80GB"}
            # Counters keep increasing between scrapes (the twin advances with the clock, 60x here).
            first = {r["metric"]["uuid"]: float(r["value"][1])
                     for r in prom.wait_for("gpufleet_gpu_energy_joules_total", timeout=30)}

            def grew() -> bool:
                now = {r["metric"]["uuid"]: float(r["value"][1])
                       for r in prom.query("gpufleet_gpu_energy_joules_total")}
                return bool(now) and all(now[u] > first[u] for u in first)
            wait_until(grew, 30, "energy counters to grow")
            names = {r["metric"]["__name__"] for r in prom.query('{__name__=~"gpufleet_.*"}')}
            native = {m.name for m in catalogue()}
            assert names <= native | {n + "_created" for n in native}
        finally:
            prom.stop()
