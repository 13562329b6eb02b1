"""Screenshots of every console page for docs/console.md: a real service over the twin (4 nodes x 8 GPUs),
a few jobs, a cordoned GPU, a lost GPU with its alert silenced, then each page as each role needs it,
in headless Chromium (Debian's chromium + chromium-driver, and selenium).

    python scripts/console_screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gpufleet.api.context import initialise
from gpufleet.service import build_service
from gpufleet.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]

PASSWORD = "screenshot-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="console-shots-"))
    settings = load_settings(None, {
        "data_dir": str(tmp / "data"),
        "exporter": {"source": "twin", "interval": 1, "listen": f"127.0.0.1:{free_port()}"},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1, "password_hash_memory_kib": 8192},
        "twin": {"nodes": 4, "gpus_per_node": 8, "seed": 11, "failures": False},
    })
    (tmp / "pw").write_text(PASSWORD)
    initialise(settings.api, settings.data_dir, password_file=tmp / "pw")
    svc = build_service(settings)
    svc.start()
    try:
        svc.loop.wait_cycles(3, timeout=60)
        url = svc.api.url
        h = {"Authorization": "Bearer " + httpx.post(f"{url}/auth/login", json={"username": "admin", "password": PASSWORD}
                                                     ).json()["access_token"]}
        for name, role in (("dev", "developer"), ("aud", "auditor")):
            httpx.post(f"{url}/users", headers=h, json={"username": name, "password": PASSWORD, "role": role, "team": "ml"})
        gpus = httpx.get(f"{url}/gpus", headers=h).json()["items"]
        httpx.post(f"{url}/gpus/{gpus[5]['uuid']}/cordon", headers=h, json={"reason": "fan noise, RMA 42"})
        jobs = httpx.post(f"{url}/jobs", headers=h, json={"jobs": [
            {"name": "prepare", "client_id": "a", "command": ["sh", "-c", "echo preparing; sleep 1; echo done"]},
            {"name": "train", "depends_on": ["a"], "gpus": 2,
             "command": ["sh", "-c", "for i in 1 2 3 4 5; do echo epoch $i loss 0.$((9-i)); sleep 1; done"]},
            {"name": "serve-model", "gpus": 1, "command": ["sleep", "300"]}]}).json()
        twin = svc.source.twin
        twin.inject_fault(gpus[9]["uuid"], "fall_off_bus", at=twin.now + 0.5)
        wait_until(lambda: bool(httpx.get(f"{url}/alerts", headers=h).json()), 30, "an alert")
        httpx.post(f"{url}/silences", headers=h, json={"matchers": [{"name": "uuid", "op": "=", "value": gpus[9]["uuid"]}],
                                                       "duration_s": 7200, "comment": "known: RMA"})
        time.sleep(6)
        _shoot(url, args.out, gpus[5]["uuid"], jobs[1]["id"])
    finally:
        svc.stop()


def _shoot(url: str, out: Path, gpu: str, job: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900", "--hide-scrollbars"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=DriverService("/usr/bin/chromedriver"))
    try:
        def sign_in(user: str) -> None:
            d.delete_all_cookies()
            d.get(f"{url}/console/login")
            d.find_element(By.ID, "username").send_keys(user)
            d.find_element(By.ID, "password").send_keys(PASSWORD)
            d.find_element(By.ID, "signin").click()
            wait_until(lambda: "/console/fleet" in d.current_url, 10, "signed in")

        def shot(path: str, name: str, full: bool = True) -> None:
            d.get(f"{url}/console{path}")
            if full:
                height = d.execute_script("return document.documentElement.scrollHeight")
                d.set_window_size(1280, max(700, min(int(height) + 20, 2400)))
            d.save_screenshot(str(out / f"{name}.png"))
            d.set_window_size(1280, 900)
            print(out / f"{name}.png")

        d.get(f"{url}/console/login")
        d.save_screenshot(str(out / "login.png"))
        print(out / "login.png")
        sign_in("admin")
        for path, name in (("/fleet", "fleet"), (f"/gpus/{gpu}", "gpu"), ("/jobs", "jobs"), (f"/jobs/{job}", "job"),
                           ("/alerts", "alerts"), ("/capacity", "capacity"), ("/audit", "audit"), ("/users", "users")):
            shot(path, name)
        sign_in("dev")
        shot(f"/gpus/{gpu}", "gpu-developer")
        sign_in("aud")
        shot("/jobs", "jobs-auditor")
    finally:
        d.quit()



if __name__ == "__main__":
    main()
