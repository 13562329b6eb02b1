"""`serve --fleet-url` takes nodes first seen after it started (#15): two twin exporters scraped by a real
Prometheus, the service started on them, then a third exporter started. After the next cycles the new
node's GPUs are listed and schedulable (a job for its GPU type is placed there), the join is audited, and
the cluster layout survives a restart: with the joined node silent at the restart its running job keeps
its GPUs, which stay unknown and take no new work until the node answers again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gpufleet.analytics.fleet.reader import open_fleet

from gpufleet.api.context import initialise
from gpufleet.service import Service, build_service
from gpufleet.settings import Settings, load_settings
from tests.fleet.fleet_servers import TwinExporters, scraper, twin_devices
from tests.servers import Prometheus, free_port, wait_until

PASSWORD = "fleet-growth-test-password"
LATE = 1  # twin-node-001 (its GPUs: H100) starts after the service; the others at once


class Fleet:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.exporters = TwinExporters(tmp / "exporters")
        self.server: Prometheus | Any = None
        self.svc: Service | None = None
        self.settings: Settings | None = None

    def start_service(self) -> Service:
        assert self.settings is not None
        self.svc = build_service(self.settings)
        self.svc.start()
        self.svc.loop.wait_cycles(2, timeout=30)
        return self.svc

    def stop_service(self) -> None:
        if self.svc is not None:
            self.svc.stop()
            self.svc = None

    def login(self) -> dict[str, str]:
        assert self.svc is not None and self.svc.api is not None
        r = httpx.post(f"{self.svc.api.url}/auth/login", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def get(self, path: str, h: dict[str, str]) -> Any:
        assert self.svc is not None and self.svc.api is not None
        r = httpx.get(f"{self.svc.api.url}{path}", headers=h, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    try:
        f.server = scraper("prometheus", tmp_path / "prometheus", f.exporters.targets)
        for i in range(len(f.exporters.nodes)):
            if i != LATE:
                f.exporters.start(i, fault=False)
        on_time = {u for u, (n, _) in twin_devices().items() if n != f.exporters.nodes[LATE]}
        with open_fleet(f.server.url) as reader:
            wait_until(lambda: set(reader.read().devices) == on_time, 30, "the first two nodes scraped",
                       interval=0.25)
        data = tmp_path / "data"
        f.settings = load_settings(None, {
            "data_dir": str(data), "exporter": {"interval": 1},
            "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
            "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1,
                    "password_hash_memory_kib": 8192},
            "fleet": {"url": f.server.url, "kind": "prometheus", "names": "auto", "stale_after": 5.0},
        })
        pw = tmp_path / "pw"
        pw.write_text(PASSWORD)
        initialise(f.settings.api, f.settings.data_dir, password_file=pw)
        yield f
    finally:
        f.stop_service()
        if f.server is not None:
            f.server.stop()
        f.exporters.stop()


def test_a_node_that_joins_later_is_schedulable_and_kept_across_a_restart(fleet: Fleet) -> None:
    expected = twin_devices()
    late = fleet.exporters.nodes[LATE]
    on_late = {u for u, (n, _) in expected.items() if n == late}
    svc = fleet.start_service()
    h = fleet.login()
    st = svc.jobs.queue.state
    assert late not in st.names and len(fleet.get("/gpus", h)["items"]) == len(expected) - len(on_late)
    job = {"name": "on-h100", "gpus": 2, "gpu_types": ["H100-SXM5-80GB"], "duration_s": 86400}
    r = httpx.post(f"{svc.api.url}/jobs", headers=h, json={"jobs": [job]})  # type: ignore[union-attr]
    assert r.status_code in (400, 409, 422), r.text  # no H100 in the cluster yet: refused, says why

    fleet.exporters.start(LATE, fault=False)
    wait_until(lambda: late in st.names, 30, "the late node in the allocator's cluster", interval=0.25)
    assert st.names[-1] == late and set(st.uuids[-1]) == on_late  # appended: nothing else moved
    i = st.names.index(late)
    assert int(st.cpu_cap[i]) > 0 and int(st.mem_cap[i]) > 0  # its CPU / memory from the fleet
    wait_until(lambda: {g["uuid"] for g in fleet.get("/gpus", h)["items"]} == set(expected), 20,
               "every GPU listed")
    r = httpx.post(f"{svc.api.url}/jobs", headers=h, json={"jobs": [job]})  # type: ignore[union-attr]
    assert r.status_code == 201, r.text
    placed = r.json()[0]
    assert placed["state"] == "running" and set(placed["placement"]) == on_late and placed["node"] == late
    joined = fleet.get(f"/audit?action=node.joined&target={late}", h)["items"]
    assert len(joined) == 1 and joined[0]["detail"]["gpus"] == len(on_late)
    assert joined[0]["detail"]["model"] == "H100-SXM5-80GB"

    # the joined node goes silent, then the service restarts: the layout comes back from the database
    fleet.exporters.kill(LATE)
    with open_fleet(fleet.server.url) as reader:
        wait_until(lambda: late in reader.read().silent_nodes(), 30, "the late node silent", interval=0.25)
    fleet.stop_service()
    svc = fleet.start_service()
    h = fleet.login()
    st = svc.jobs.queue.state
    assert st.names.index(late) == i and set(st.uuids[i]) == on_late
    jobs = {j["id"]: j for j in fleet.get("/jobs", h)["items"]}
    again = jobs[placed["id"]]
    assert again["state"] == "running" and set(again["placement"]) == on_late and again["node"] == late
    assert all(int(st.gpu_free[st.locate(u)]) == 0 for u in on_late)  # still held by that job
    wait_until(lambda: all(g["health"] == "unknown" for g in fleet.get("/gpus", h)["items"]
                           if g["uuid"] in on_late), 20, "the silent node's GPUs unknown")
    assert {g["uuid"] for g in fleet.get("/gpus", h)["items"]} == set(expected)
    assert len(fleet.get(f"/audit?action=node.joined&target={late}", h)["items"]) == 1  # not joined twice

    # back: the node answers again, its GPUs are ok, the job is still where it was
    fleet.exporters.start(LATE, fault=False)
    wait_until(lambda: all(g["health"] == "ok" for g in fleet.get("/gpus", h)["items"] if g["uuid"] in on_late),
               30, "the node back")
    again = {j["id"]: j for j in fleet.get("/jobs", h)["items"]}[placed["id"]]
    assert set(again["placement"]) == on_late and again["state"] == "running"
