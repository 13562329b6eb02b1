"""Reader equivalence: the same samples in the embedded store, a real Prometheus and a real
VictoriaMetrics read back the same through the three readers (raw and bucketed, every agg).

A tiny exporter collects one snapshot from the digital twin per scrape (so Prometheus and the
store hold the very same samples) and exposes it with explicit timestamps; each snapshot also
goes to the store and, in line protocol rendered by the exporter's InfluxDB sink, to
VictoriaMetrics.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from gpufleet.analytics.history.prometheus import PrometheusReader
from gpufleet.analytics.history.store import StoreReader
from gpufleet.analytics.history.victoria import VictoriaReader
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.influx import snapshot_lines
from gpufleet.exporter.store import HistoryStore
from gpufleet.simulator.twin import TwinConfig, TwinSource

from tests.servers import Prometheus, VictoriaMetrics, wait_until

FIELDS = ["temperature_gpu", "power_usage", "energy", "util_gpu", "clock_event_active"]
STEP = 2.0


class Feed:
    """Serves /metrics; every scrape makes the next snapshot (until stopped) and stores it everywhere."""

    def __init__(self, store: HistoryStore, vm_url: str) -> None:
        self.store, self.vm_url = store, vm_url
        self.k = 0
        self.source = TwinSource(TwinConfig(nodes=1, gpus_per_node=2, seed=3, warmup_s=0))
        self.source.open()
        self.generating = True
        self.lock = threading.Lock()
        self.text = ""
        self.vm = httpx.Client(timeout=10)
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = feed.scrape().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def snapshot(self) -> Snapshot:
        # Half seconds: ts * 1e9 (the sink's float nanoseconds) is exact for them, so
        # VictoriaMetrics (which truncates to milliseconds) keeps the very same millisecond; with
        # quarter seconds it is not always (x.25 * 1e9 can land 128 ns early: 1 ms early in VM).
        # Some samples land on bucket edges.
        return self.source.collect(math.floor(time.time() * 2) / 2)

    def stop_generating(self) -> None:
        with self.lock:  # a scrape in progress finishes its writes first
            self.generating = False

    def scrape(self) -> str:
        with self.lock:
            return self._scrape()

    def _scrape(self) -> str:
        if self.generating:
            snap = self.snapshot()
            self.k += 1
            self.store.write(snap)
            self.vm.post(f"{self.vm_url}/api/v2/write", content="\n".join(snapshot_lines(snap)).encode()
                         ).raise_for_status()
            cat = catalogue()
            lines = []
            for s in snap.samples:
                m = cat.field(s.field) if s.field in cat else None
                if m is None or m.type == "info" or m.scope != "device":
                    continue
                labels = {"uuid": s.uuid, "node": snap.node, **dict(s.labels)}
                lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
                lines.append(f"{m.name}{{{lab}}} {s.value!r} {round(s.ts * 1000)}")
                if m.dcgm_name and not s.labels:  # dcgm-exporter naming, units and uuid label too
                    lines.append(f'{m.dcgm_name}{{UUID="{s.uuid}",Hostname="{snap.node}"}} '
                                 f"{s.value * m.dcgm_scale!r} {round(s.ts * 1000)}")
            self.text = "\n".join(lines) + "\n"
        return self.text

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.vm.close()
        self.source.close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("readers")
    vm = VictoriaMetrics(tmp / "vm")
    store = HistoryStore(tmp / "store")
    feed = Feed(store, vm.url)
    prom = Prometheus(tmp / "prom", [feed.target], interval="1s")
    try:
        wait_until(lambda: feed.k >= 9, 40, "nine scrapes", interval=0.2)
        feed.stop_generating()
        store.flush()
        vm.flush()
        first, last = store.span()
        assert first is not None and last is not None
        since = math.ceil(first / STEP) * STEP
        until = math.floor(last / STEP) * STEP + STEP
        # VictoriaMetrics clamps query_range's end to "now": let the last bucket be in the past.
        wait_until(lambda: time.time() > until + 1.5, 10, "the last bucket to end")
        reader = StoreReader(HistoryStore(tmp / "store"), resolution="raw")
        n = len(reader.read(FIELDS, since, until))
        promr = PrometheusReader(prom.url)
        wait_until(lambda: len(promr.read(FIELDS, since, until)) == n, 20, "Prometheus holds every sample")
        vmr = VictoriaReader(vm.url)

        def vm_complete() -> bool:
            vm.flush()
            return len(vmr.read(FIELDS, since, until)) == n
        wait_until(vm_complete, 20, "VictoriaMetrics holds every sample")
        yield {"store": reader, "prometheus": promr, "victoria": vmr, "since": since,
               "until": until, "prom_url": prom.url}
    finally:
        prom.stop()
        feed.stop()
        store.close()
        vm.stop()


def _same(a: pd.DataFrame, b: pd.DataFrame, rtol: float) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b) and len(a) > 0
    np.testing.assert_array_equal(a["ts"].to_numpy(), b["ts"].to_numpy())
    assert list(a["uuid"].astype(str)) == list(b["uuid"].astype(str))
    for c in a.columns[2:]:
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=rtol, equal_nan=True)


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("backend,rtol", [("prometheus", 0.0), ("victoria", 1e-12)])
def test_raw_samples_equal(fed: dict[str, Any], backend: str, rtol: float) -> None:
    want = fed["store"].read(FIELDS, fed["since"], fed["until"])
    assert {"clock_event_active{reason=hw_slowdown}", "temperature_gpu", "energy"} <= set(want.columns)
    _same(want, fed[backend].read(FIELDS, fed["since"], fed["until"]), rtol)


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("backend", ["prometheus", "victoria"])
@pytest.mark.parametrize("agg", ["mean", "min", "max", "last"])
def test_buckets_equal(fed: dict[str, Any], backend: str, agg: str) -> None:
    want = fed["store"].read(FIELDS, fed["since"], fed["until"], step=STEP, agg=agg)
    assert (want["ts"].astype("int64") % int(STEP * 1e9) == 0).all()
    _same(want, fed[backend].read(FIELDS, fed["since"], fed["until"], step=STEP, agg=agg), 1e-12)


@pytest.mark.slow
@pytest.mark.server
def test_prometheus_chunks_and_uuid_filter(fed: dict[str, Any]) -> None:
    small = PrometheusReader(fed["prom_url"], max_points=2, raw_chunk_s=1.5)  # many requests
    one = [str(fed["store"].read(["power_usage"], fed["since"], fed["until"])["uuid"].iloc[-1])]
    for step in (None, STEP):
        want = fed["store"].read(["power_usage"], fed["since"], fed["until"], step=step, uuids=one)
        got = small.read(["power_usage"], fed["since"], fed["until"], step=step, uuids=one)
        assert set(got["uuid"].astype(str)) == set(one)
        _same(want, got, 1e-12)


@pytest.mark.slow
@pytest.mark.server
def test_prometheus_dcgm_names_read_back_in_base_units(fed: dict[str, Any]) -> None:
    dcgm = PrometheusReader(fed["prom_url"], names="dcgm")
    fields = ["temperature_gpu", "power_usage", "energy", "util_gpu"]  # all have dcgm names and scales
    for step in (None, STEP):
        want = fed["store"].read(fields, fed["since"], fed["until"], step=step)
        _same(want, dcgm.read(fields, fed["since"], fed["until"], step=step), 1e-12)
    # a field dcgm-exporter does not have is absent, not zero
    assert "clock_event_active{reason=hw_slowdown}" not in dcgm.read(["clock_event_active"], fed["since"],
                                                                      fed["until"]).columns
