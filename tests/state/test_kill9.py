"""`kill -9` of a running `gpufleet serve` loses nothing it acknowledged: jobs (running and waiting, with
their ids and states), a cordon and a silence are all there after a restart on the same data folder, and
the cordoned GPU still gets no job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from gpufleet.api.context import initialise
from gpufleet.settings import load_settings
from tests.servers import free_port, wait_until

PASSWORD = "kill-nine-test-password"


def _serve(data: Path, api_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GPUFLEET_API__PASSWORD_HASH_TIME_COST": "1", "GPUFLEET_API__PASSWORD_HASH_MEMORY_KIB": "8192",
           "GPUFLEET_TWIN__NODES": "1", "GPUFLEET_TWIN__GPUS_PER_NODE": "4", "GPUFLEET_TWIN__FAILURES": "false"}
    return subprocess.Popen([sys.executable, "-m", "gpufleet", "serve", "--source", "twin", "-d", str(data),
                             "--listen", f"127.0.0.1:{api_port}", "--metrics-listen", f"127.0.0.1:{free_port()}",
                             "--interval", "1"], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def _login(url: str) -> dict[str, str]:
    r = httpx.post(f"{url}/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    initialise(load_settings(None, {"data_dir": str(data)}).api, data, password_file=pw)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(data, port, log)
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 90, "serve ready")
        h = _login(url)
        gpus = httpx.get(f"{url}/gpus", headers=h).json()["items"]
        assert len(gpus) == 4
        cordoned = gpus[0]["uuid"]
        assert httpx.post(f"{url}/gpus/{cordoned}/cordon", headers=h,
                          json={"reason": "fan noise"}).status_code == 200
        r = httpx.post(f"{url}/jobs", headers=h, json={"jobs": [
            {"name": "run-a", "gpus": 2, "duration_s": 86400},
            {"name": "wait-b", "gpus": 2, "duration_s": 86400}]})  # 3 usable GPUs: b waits
        assert r.status_code == 201, r.text
        before = {j["name"]: j for j in r.json()}
        assert before["run-a"]["state"] == "running" and before["wait-b"]["state"] == "pending"
        assert cordoned not in before["run-a"]["placement"]
        s = httpx.post(f"{url}/silences", headers=h, json={
            "matchers": [{"name": "alertname", "value": "GpuHot"}], "duration_s": 3600, "comment": "known"})
        assert s.status_code == 201, s.text
        proc.send_signal(signal.SIGKILL)  # no shutdown path runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    proc = _serve(data, port, log)
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 90, "serve ready again")
        h = _login(url)
        after = {j["name"]: j for j in httpx.get(f"{url}/jobs", headers=h).json()["items"]}
        assert set(after) == {"run-a", "wait-b"}
        for name in after:
            assert after[name]["id"] == before[name]["id"]
        assert after["run-a"]["state"] in ("running", "requeued", "pending")  # the twin's run survives or resumes
        assert after["wait-b"]["state"] == "pending"
        gpu = httpx.get(f"{url}/gpus/{cordoned}", headers=h).json()
        assert gpu["state"] == "cordoned", gpu
        silences = httpx.get(f"{url}/silences", headers=h).json()
        assert [m["value"] for m in silences[0]["matchers"]] == ["GpuHot"]
        allocs = httpx.get(f"{url}/allocations", headers=h).json()
        assert cordoned not in {a["uuid"] for a in allocs["items"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
