"""`gpufleet exporter` as a user runs it: one clear line without a driver; the twin served on /metrics
and written to InfluxDB (a real VictoriaMetrics) and the history store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, VictoriaMetrics, free_port, wait_until

CLI = [sys.executable, "-c", "from gpufleet.cli import main; main()"]


def _nvml_present() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.parametrize("source", [["--source", "nvml"], []])
def test_no_driver_is_one_clear_line_pointing_at_the_twin(source: list[str]) -> None:
    if _nvml_present():
        pytest.skip("this machine has an NVIDIA driver")
    p = subprocess.run([*CLI, "exporter", *source], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 4
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--source twin" in lines[0] and "Traceback" not in p.stderr


def test_bad_interval_is_a_config_error() -> None:
    p = subprocess.run([*CLI, "exporter", "--source", "twin", "--interval", "0.2"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 2 and "interval" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.server
@pytest.mark.slow
def test_twin_exporter_serves_metrics_and_writes_influx_and_store(victoria: VictoriaMetrics,
                                                                  tmp_path: Path) -> None:
    port = free_port()
    env_file = tmp_path / "gpufleet.toml"
    env_file.write_text(f'data_dir = "{tmp_path / "data"}"\n[twin]\nnodes = 1\ngpus_per_node = 2\n')
    proc = subprocess.Popen([*CLI, "exporter", "--source", "twin", "--listen", f"127.0.0.1:{port}", "--names", "both",
                             "--interval", "1", "--influx-url", victoria.url, "--store", str(tmp_path / "store"),
                             "--config", str(env_file), "--duration", "6"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        text = ""

        def served() -> bool:
            nonlocal text
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return "DCGM_FI_DEV_GPU_TEMP{" in text
        wait_until(served, 60, "exporter /metrics")
        assert "gpufleet_gpu_temperature_celsius{" in text
        assert 'gpufleet_collector_success{collector="twin"} 1' in text
        for self_metric in ("gpufleet_influx_buffered_points ", 'gpufleet_influx_dropped_points_total{policy="drop_oldest"} 0',
                            "gpufleet_influx_written_points_total ", "gpufleet_store_written_samples_total ",
                            "gpufleet_snapshot_age_seconds "):
            assert self_metric in text
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "serving http://127.0.0.1:" in out

    def in_victoria() -> bool:
        victoria.flush()
        r = httpx.get(f"{victoria.url}/api/v1/series", params={"match[]": "gpufleet_thermal_temperature_gpu"},
                      timeout=10)
        return len(r.json()["data"]) == 2
    wait_until(in_victoria, 30, "twin points in VictoriaMetrics")

    from gpufleet.exporter.store import HistoryStore

    store = HistoryStore(tmp_path / "store", create=False)
    try:
        assert "temperature_gpu" in store.fields()
        assert len(store.devices()) == 2
    finally:
        store.close()
