"""`gpufleet serve` in fleet mode end to end: three twin exporters (one per node) scraped every second by a
real Prometheus or VictoriaMetrics, and the service reading the whole fleet from it (no local GPU).

Through the API: every GPU of every node with its node name and the node's capacity from the fleet;
failure risk for every GPU after one scoring run (history read back from the fleet's store); the GPU
that falls off the bus shows lost; a killed exporter makes its node's GPUs unknown, fires FleetNodeSilent
naming the node, and no job is placed there; a restarted exporter brings the node back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gpufleet.analytics.datasets import FAILURE_FIELDS
from gpufleet.analytics.fleet.reader import open_fleet
from gpufleet.analytics.registry import Registry
from gpufleet.models.baselines import OperatorRules

from gpufleet.api.context import initialise
from gpufleet.service import Service, build_service
from gpufleet.settings import load_settings
from tests.fleet.fleet_servers import FAULT_GPU, FAULT_NODE, TwinExporters, scraper, twin_devices
from tests.servers import free_port, wait_until

PASSWORD = "fleet-serve-test-password"


def _champion(models: Path) -> None:
    """A fitted rules model as the registry's champion, so one scoring run has a model to score with."""
    rng = np.random.default_rng(0)
    X = rng.normal(60, 5, (40, 6, len(FAILURE_FIELDS))).astype(np.float32)
    mask = np.ones(X.shape, np.uint8)
    y = (rng.random((40, 2)) < 0.3).astype(np.int8)
    model = OperatorRules().fit(X, mask, y, feature_names=FAILURE_FIELDS, horizons=(3600.0, 86400.0))
    reg = Registry(models)
    version = reg.save(model, as_of=0.0, data_span=(0.0, 1.0), metrics={}, extra={"window_s": 600.0, "step_s": 60.0})
    reg._set_champion(version, 0.0)


@pytest.fixture(params=[("prometheus", "native"), ("victoriametrics", "dcgm")], ids=lambda p: f"{p[0]}-{p[1]}")
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TwinExporters, Service]]:
    kind, names = request.param
    exporters = TwinExporters(tmp_path / "exporters", names)
    server = None
    svc = None
    try:
        server = scraper(kind, tmp_path / kind, exporters.targets)
        exporters.start_all()
        with open_fleet(server.url, kind) as reader:  # serve builds its allocator from the first inventory
            wait_until(lambda: len(reader.read().devices) == len(twin_devices()), 30, "the fleet scraped",
                       interval=0.25)
        data = tmp_path / "data"
        settings = load_settings(None, {
            "data_dir": str(data), "exporter": {"interval": 1},
            "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
            "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1,
                    "password_hash_memory_kib": 8192},
            "fleet": {"url": server.url, "kind": kind, "names": "auto", "stale_after": 5.0},
        })
        pw = tmp_path / "pw"
        pw.write_text(PASSWORD)
        initialise(settings.api, settings.data_dir, password_file=pw)
        _champion(data / "models")
        svc = build_service(settings)
        svc.start()
        svc.loop.wait_cycles(2, timeout=30)
        yield exporters, svc
    finally:
        if svc is not None:
            svc.stop()
        if server is not None:
            server.stop()
        exporters.stop()


def _get(svc: Service, path: str, h: dict[str, str]) -> Any:
    assert svc.api is not None
    r = httpx.get(f"{svc.api.url}{path}", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_serve_over_the_fleet(served: tuple[TwinExporters, Service]) -> None:
    exporters, svc = served
    assert svc.api is not None and svc.fleet_mode
    r = httpx.post(f"{svc.api.url}/auth/login", json={"username": "admin", "password": PASSWORD})
    h = {"Authorization": f"Bearer {r.json()['access_token']}"}
    expected = twin_devices()

    gpus = _get(svc, "/gpus", h)
    assert gpus["total"] == len(expected)
    assert {g["uuid"]: (g["node"], g["index"]) for g in gpus["items"]} == expected
    assert all(g["health"] == "ok" and g["temperature_celsius"] is not None for g in gpus["items"])
    # node capacity from the exporters' node info, not a constant
    st = svc.jobs.queue.state
    assert all(int(st.cpu_cap[i]) == (os.cpu_count() or 0) * 1000 for i in range(len(st.names)))

    # one scoring run: a risk for every GPU, from history read back from the fleet's store
    svc.analytics.score(0.0)
    assert set(svc.fleet.risk) == set(expected)
    assert all(0.0 <= p <= 1.0 for hz in svc.fleet.risk.values() for p in hz.values())

    faulty = next(u for u, (n, i) in expected.items() if n == exporters.nodes[FAULT_NODE] and i == FAULT_GPU)
    exporters.wait_fault()
    wait_until(lambda: _get(svc, f"/gpus/{faulty}", h)["health"] == "lost", 10, "the fallen GPU lost")

    silent = exporters.nodes[2]
    exporters.kill(2)
    on_silent = {u for u, (n, _) in expected.items() if n == silent}
    wait_until(lambda: all(g["health"] == "unknown" for g in _get(svc, "/gpus", h)["items"] if g["uuid"] in on_silent),
               20, "the silent node's GPUs unknown")
    items = {g["uuid"]: g for g in _get(svc, "/gpus", h)["items"]}
    assert all(not items[u]["up"] for u in on_silent)
    assert all(items[u]["health"] == "ok" for u in expected if u not in on_silent and u != faulty)

    def silent_alert() -> bool:
        alerts = _get(svc, "/alerts", h)
        return any(a["name"] == "FleetNodeSilent" and a["labels"].get("node") == silent for a in alerts)
    wait_until(silent_alert, 20, "FleetNodeSilent for the killed node")
    # no placement on the silent node: 3 healthy GPUs are left (6 - 1 lost - 2 unknown)
    r = httpx.post(f"{svc.api.url}/jobs", headers=h, json={"jobs": [
        {"name": f"j{k}", "gpus": 1, "duration_s": 86400} for k in range(4)]})
    assert r.status_code == 201, r.text
    jobs = r.json()
    placed = [u for j in jobs for u in j["placement"]]
    assert len(placed) == 3 and not set(placed) & (on_silent | {faulty})
    assert sorted(j["state"] for j in jobs) == ["pending", "running", "running", "running"]

    exporters.start(2, fault=False)
    wait_until(lambda: all(g["health"] == "ok" for g in _get(svc, "/gpus", h)["items"] if g["uuid"] in on_silent),
               30, "the node back")
    wait_until(lambda: not silent_alert(), 20, "FleetNodeSilent resolved")
