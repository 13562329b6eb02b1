"""Benchmark: the console's fleet page for a 1,000-GPU twin (targets: <= 300 ms of server time, <= 1 s to
usable in headless Chromium).

The API (with the console) runs under uvicorn on a loopback port over a FleetState holding one twin
snapshot of 125 nodes x 8 GPUs, with failure risk for every GPU and a few GPUs cordoned / draining / lost.
Figures, median and worst over several loads:
  server    the console's own time for GET /console/fleet (its Server-Timing header: the in-process API
            call for every GPU, filtering, rendering the page)
  http      the same request's wall time seen by an HTTP client on loopback
  browser   headless Chromium: navigation start to DOMContentLoaded (the grid is laid out and every cell
            is a link: usable) and to the load event; page size in bytes, cells on the page

    python benchmarks/console_fleet_page.py [--nodes 125] [--gpus-per-node 8] [--loads 7] [--no-browser]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from gpufleet.simulator.twin import TwinConfig, TwinSource

from gpufleet.api.app import create_app
from gpufleet.api.backend import FleetState, FleetView
from gpufleet.api.context import build_context, initialise
from gpufleet.api.server import ApiServer
from gpufleet.settings import ApiSettings

PASSWORD = "benchmark-password"


def _fleet(nodes: int, per_node: int) -> FleetState:
    src = TwinSource(TwinConfig(nodes=nodes, gpus_per_node=per_node, seed=7, failures=False), start=time.time())
    snap = src.collect(time.time())
    view = FleetView()
    view.update_snapshots([snap])
    rng = random.Random(7)
    uuids = sorted({d.uuid for d in snap.devices})
    view.update_risk({u: {"24h": rng.betavariate(0.3, 8), "7d": rng.betavariate(0.5, 6)} for u in uuids})
    for u in rng.sample(uuids, 6):
        view.set_override(u, rng.choice(["cordoned", "draining"]))
    view.update_health({u: ("lost" if i % 2 else "unknown") for i, u in enumerate(rng.sample(uuids, 4))})
    return FleetState(view=view)


def _session(url: str) -> tuple[str, str]:
    c = httpx.Client(base_url=url)
    page = c.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = c.post("/console/login", data={"username": "admin", "password": PASSWORD, "csrf": token.group(1)},
               headers={"Cookie": f"gpufleet_console_login={page.cookies['gpufleet_console_login']}"})
    assert r.status_code == 303, r.text
    return "gpufleet_console", r.cookies["gpufleet_console"]


def _fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs):7.1f} ms   worst {max(xs):7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=125)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--loads", type=int, default=7)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="console-bench-"))
    settings = ApiSettings(password_hash_time_cost=1, password_hash_memory_kib=8192)
    pw = tmp / "pw"
    pw.write_text(PASSWORD)
    initialise(settings, tmp / "data", password_file=pw)
    fleet = _fleet(args.nodes, args.gpus_per_node)
    ctx = build_context(settings, tmp / "data", fleet=fleet)
    server = ApiServer(create_app(ctx), "127.0.0.1:0")
    server.start()
    try:
        name, sid = _session(server.url)
        cookie = {"Cookie": f"{name}={sid}"}
        url = f"{server.url}/console/fleet"
        server_ms, http_ms, size, cells = [], [], 0, 0
        with httpx.Client() as c:
            c.get(url, headers=cookie)  # warm-up (templates compiled)
            for _ in range(args.loads):
                t0 = time.perf_counter()
                r = c.get(url, headers=cookie)
                http_ms.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.status_code
                server_ms.append(float(r.headers["server-timing"].split("dur=")[1]))
                size, cells = len(r.content), r.text.count('class="cell ')
        print(f"fleet page, {len(fleet.gpus())} GPUs on {args.nodes} nodes: {cells} cells, {size / 1024:.0f} KiB")
        print(f"  server time (Server-Timing)  {_fmt(server_ms)}   (target <= 300 ms)")
        print(f"  HTTP on loopback             {_fmt(http_ms)}")
        if not args.no_browser:
            _browser(server.url, url, name, sid, args.loads)
    finally:
        server.stop()
        ctx.db.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def _browser(base: str, url: str, name: str, sid: str, loads: int) -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("  browser: skipped (apt-get install chromium chromium-driver)")
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=DriverService(driver_path))
    try:
        d.get(f"{base}/console/login")  # the cookie's path must be visited before it can be set
        d.add_cookie({"name": name, "value": sid, "path": "/console", "secure": True, "httpOnly": True,
                      "sameSite": "Strict"})
        d.get(url)  # warm-up: static files cached, as for a returning user
        dcl, load = [], []
        for _ in range(loads):
            d.get(url)
            nav = d.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                   "return [n.domContentLoadedEventEnd, n.loadEventEnd, "
                                   "document.querySelectorAll('#fleet-grid a.cell').length];")
            dcl.append(float(nav[0]))
            load.append(float(nav[1]))
            assert int(nav[2]) > 0
        print(f"  Chromium to DOMContentLoaded {_fmt(dcl)}   (usable; target <= 1000 ms)")
        print(f"  Chromium to load event       {_fmt(load)}")
    finally:
        d.quit()


if __name__ == "__main__":
    main()
