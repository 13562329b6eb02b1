"""Fleet mode against real servers: three twin exporters (one per node) scraped every second by a real
Prometheus or VictoriaMetrics, read back by the fleet reader in a fixed number of batched queries.

Each scenario: every GPU of every node is listed with its node name and its node's capacity from the
exporter's node info; a GPU that falls off the bus shows lost within two scrape intervals of its
exporter reporting it; killing one exporter makes its node (and only its node) unknown; restarting it
brings the node back."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpufleet.analytics.fleet.reader import FleetReader, open_fleet

from tests.fleet.fleet_servers import FAULT_GPU, FAULT_NODE, TwinExporters, scraper, twin_devices
from tests.servers import wait_until

SCENARIOS = [("prometheus", "native"), ("prometheus", "dcgm"), ("victoriametrics", "native")]


@pytest.fixture(params=SCENARIOS, ids=lambda p: f"{p[0]}-{p[1]}")
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TwinExporters, FleetReader]]:
    kind, names = request.param
    exporters = TwinExporters(tmp_path / "exporters", names)
    server = None
    try:
        server = scraper(kind, tmp_path / kind, exporters.targets)  # scraping from the exporters' first answer
        exporters.start_all()
        reader = open_fleet(server.url, kind, names="auto", stale_after=10.0)
        try:
            yield exporters, reader
        finally:
            reader.close()
    finally:
        if server is not None:
            server.stop()
        exporters.stop()


def _wait_view(reader: FleetReader, check, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    box = []

    def ok() -> bool:
        box[:] = [reader.read()]
        return bool(check(box[0]))
    wait_until(ok, timeout, what, interval=0.25)
    return box[0]


def test_fleet_view_lost_silent_and_back(fleet: tuple[TwinExporters, FleetReader]) -> None:
    exporters, reader = fleet
    expected = twin_devices()
    view = _wait_view(reader, lambda v: len(v.devices) == len(expected) and all(
        d.memory_total_bytes for d in v.devices.values()) and all(n.cpus for n in v.nodes.values()),
        "every GPU of every node")
    # inventory: every GPU with its node name and index, read once even though auto reads both namings
    assert {u: (d.node, d.index) for u, d in view.devices.items()} == expected
    assert set(view.names.values()) == {exporters.names}
    assert sorted(view.nodes) == exporters.nodes and not view.silent_nodes()
    assert all(d.memory_total_bytes and d.memory_total_bytes > 2**30 for d in view.devices.values())
    for nv in view.nodes.values():  # capacity from the exporter's node info, not a constant
        assert nv.capacity_from == "exporter" and nv.cpus == os.cpu_count() and nv.memory_bytes
    # batched: a fixed number of queries, whatever the fleet's size
    assert view.queries == len(reader.plan()) <= 20
    faulty = next(u for u, (n, i) in expected.items() if n == exporters.nodes[FAULT_NODE] and i == FAULT_GPU)

    # a GPU falls off the bus: lost within two scrape intervals (1 s each) of its exporter saying so
    exporters.wait_fault()
    time.sleep(2.0)
    view = reader.read()
    assert view.health[faulty] == "lost"
    assert [u for u, h in view.health.items() if h != "ok"] == [faulty]

    # one exporter dies: its node's GPUs become unknown, the other nodes carry on
    silent = exporters.nodes[2]
    exporters.kill(2)
    view = _wait_view(reader, lambda v: v.silent_nodes() == [silent], "the killed node unknown", timeout=20)
    for u, (node, _) in expected.items():
        if node == silent:
            assert view.health[u] == "unknown"
        else:
            assert view.health[u] == ("lost" if u == faulty else "ok")
    snap = view.snapshot()
    assert {d.uuid for d in snap.devices} == set(expected)  # still listed ...
    assert not any(s.uuid in view.nodes[silent].gpus for s in snap.samples)  # ... without stale values
    assert not set(snap.up) & set(view.nodes[silent].gpus)

    # restarted: the node is back, with the same GPUs
    exporters.start(2, fault=False)
    view = _wait_view(reader, lambda v: not v.silent_nodes() and all(
        v.health[u] == "ok" for u in v.nodes[silent].gpus), "the node back", timeout=30)
    assert {u for u in view.nodes[silent].gpus} == {u for u, (n, _) in expected.items() if n == silent}
