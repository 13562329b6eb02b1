"""`gpufleet serve` wired end to end on the digital twin: /metrics (device + service metrics, promtool
clean), the API over the live fleet, jobs placed by the allocator, a GPU falling off the bus (job
requeued, GpuLost alert), and graceful SIGTERM with state persisted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gpufleet.api.context import initialise
from gpufleet.service import Service, build_service
from gpufleet.settings import load_settings
from tests.servers import free_port, require_binary, wait_until

PASSWORD = "service-test-password"


def _settings(data: Path, **extra: object):  # type: ignore[no-untyped-def]
    return load_settings(None, {
        "data_dir": str(data),
        "exporter": {"source": "twin", "interval": 1, "listen": f"127.0.0.1:{free_port()}"},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1, "password_hash_memory_kib": 8192},
        "twin": {"nodes": 2, "gpus_per_node": 4, "seed": 3, "failures": False},
        **extra,
    })


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    settings = _settings(tmp_path / "data")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    initialise(settings.api, settings.data_dir, password_file=pw)
    svc = build_service(settings)
    svc.start()
    try:
        svc.loop.wait_cycles(2, timeout=30)
        yield svc
    finally:
        svc.stop()


def _token(svc: Service) -> dict[str, str]:
    assert svc.api is not None
    r = httpx.post(f"{svc.api.url}/auth/login", json={"username": "admin", "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_metrics_are_complete_and_promtool_clean(service: Service) -> None:
    promtool = require_binary("promtool")
    body = httpx.get(service.metrics_server.url).text
    assert "gpufleet_gpu_temperature_celsius{" in body and "gpufleet_capacity_gpus{series=\"total\"} 8" in body
    assert "gpufleet_allocation_ratio" in body and "gpufleet_collector_success" in body
    names = [line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and not line.startswith("#")]
    info_lines = [line for line in body.splitlines() if line.startswith("gpufleet_gpu_info{")]
    assert len(info_lines) == 8, "identity series must not be duplicated"
    from gpufleet.exporter.catalogue import catalogue

    assert set(names) <= catalogue().names("native")
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "", check.stdout + check.stderr


def test_api_jobs_and_a_gpu_falling_off_the_bus(service: Service) -> None:
    assert service.api is not None
    h = _token(service)
    gpus = httpx.get(f"{service.api.url}/gpus", headers=h).json()
    assert gpus["total"] == 8 and all(g["temperature_celsius"] is not None for g in gpus["items"])
    r = httpx.post(f"{service.api.url}/jobs", headers=h,
                   json={"jobs": [{"name": "train", "gpus": 2, "checkpoint_interval_s": 60, "duration_s": 86400}]})
    assert r.status_code == 201, r.text
    job = r.json()[0]
    assert job["state"] == "running"
    victim = job["placement"][0]
    twin = service.source.twin
    twin.inject_fault(victim, "fall_off_bus", at=twin.now + 0.5)

    def requeued() -> bool:
        j = httpx.get(f"{service.api.url}/jobs/{job['id']}", headers=h).json()
        return victim not in j["placement"]
    wait_until(requeued, 30, "job moved off the lost GPU")
    assert httpx.get(f"{service.api.url}/gpus/{victim}", headers=h).json()["up"] is False

    def lost_alert() -> bool:
        alerts = httpx.get(f"{service.api.url}/alerts", headers=h).json()
        return any(a["labels"].get("uuid") == victim and a["name"].startswith("Gpu") for a in alerts)
    wait_until(lost_alert, 30, "an alert for the lost GPU")
    body = httpx.get(service.metrics_server.url).text
    assert f'gpufleet_gpu_up{{uuid="{victim}"' in body and "gpufleet_gpu_time_lost_seconds_total" in body


def test_sigterm_is_graceful_and_state_survives(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    settings = _settings(data)
    initialise(settings.api, data, password_file=pw)
    api_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "GPUFLEET_API__PASSWORD_HASH_TIME_COST": "1", "GPUFLEET_API__PASSWORD_HASH_MEMORY_KIB": "8192",
           "GPUFLEET_TWIN__NODES": "1", "GPUFLEET_TWIN__GPUS_PER_NODE": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "gpufleet", "serve", "--source", "twin", "-d", str(data),
                             "--listen", f"127.0.0.1:{api_port}", "--metrics-listen", f"127.0.0.1:{metrics_port}",
                             "--interval", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{api_port}/readyz").status_code == 200, 60, "serve ready")
        token = httpx.post(f"http://127.0.0.1:{api_port}/auth/login",
                           json={"username": "admin", "password": PASSWORD}).json()["access_token"]
        r = httpx.post(f"http://127.0.0.1:{api_port}/jobs", headers={"Authorization": f"Bearer {token}"},
                       json={"jobs": [{"name": "keep-me", "gpus": 1, "duration_s": 86400}]})
        assert r.status_code == 201
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    from gpufleet.state import close_state, open_state  # the queue is rows in the service's database

    url = f"sqlite:///{(data / 'gpufleet.db').resolve()}"
    queue = open_state(url).load()
    close_state(url)
    assert queue is not None and [j["spec"]["name"].split("-", 1)[1] for j in queue["jobs"]] == ["keep-me"]
    assert not (data / "alerting" / "state.json").exists()  # alert state is rows in that database too
    assert "stopped" in out
