"""InfluxDB sink: line protocol, the on-disk buffer (order, restart, overflow), and a real
VictoriaMetrics receiving the writes through an outage: every point arrives, none twice."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.loop import CollectionLoop
from gpufleet.exporter.schema import Device, Sample, Snapshot
from gpufleet.exporter.sinks.base import Sink
from gpufleet.exporter.sinks.buffer import DiskBuffer
from gpufleet.exporter.sinks.influx import InfluxSink, snapshot_lines

from tests.exporter.synthetic import SyntheticSource
from tests.servers import VictoriaMetrics, free_port, wait_until


def test_line_protocol_measurement_per_family_tags_fields_ns() -> None:
    d = Device(uuid="GPU-1", index=0, node="n 1", model="NVIDIA A100-SXM4-40GB", pci_bus_id="00000000:07:00.0")
    snap = Snapshot(ts=1700000000.5, node="n 1", devices=[d], up={"GPU-1": 1}, samples=[
        Sample("GPU-1", "clock_sm", 1.41e9, 1700000000.5),
        Sample("GPU-1", "clock_memory", 1.215e9, 1700000000.5),
        Sample("GPU-1", "nvlink_crc_flit_errors", 3, 1700000000.5, (("link", "2"),)),
        Sample("GPU-1", "not_in_catalogue", 1, 1700000000.5),
    ])
    lines = sorted(snapshot_lines(snap))
    assert lines == sorted([
        "gpufleet_clocks,gpu=0,model=NVIDIA\\ A100-SXM4-40GB,node=n\\ 1,pci_bus_id=00000000:07:00.0,uuid=GPU-1,"
        "vendor=nvidia clock_sm=1410000000,clock_memory=1215000000 1700000000500000000",
        "gpufleet_nvlink,gpu=0,link=2,model=NVIDIA\\ A100-SXM4-40GB,node=n\\ 1,pci_bus_id=00000000:07:00.0,"
        "uuid=GPU-1,vendor=nvidia nvlink_crc_flit_errors=3 1700000000500000000",
        "gpufleet_health,gpu=0,model=NVIDIA\\ A100-SXM4-40GB,node=n\\ 1,pci_bus_id=00000000:07:00.0,uuid=GPU-1,"
        "vendor=nvidia up=1 1700000000500000000",
    ])


def test_buffer_keeps_order_across_a_restart(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, max_lines=100, segment_lines=3)
    buf.append([f"l{i}" for i in range(7)])
    start, batch = buf.peek(4)
    assert (start, batch) == (0, ["l0", "l1", "l2", "l3"])
    buf.commit(start, len(batch))
    buf.close()
    again = DiskBuffer(tmp_path, max_lines=100, segment_lines=3)
    assert again.pending() == 3
    assert again.peek(10)[1] == ["l4", "l5", "l6"]
    again.append(["l7"])
    start, batch = again.peek(10)
    again.commit(start, len(batch))
    assert again.pending() == 0 and batch == ["l4", "l5", "l6", "l7"]
    assert len(list(tmp_path.glob("seg-*.lp"))) <= 1


def test_buffer_drops_a_torn_last_line(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, max_lines=100)
    buf.append(["a", "b"])
    buf.close()
    seg = next(tmp_path.glob("seg-*.lp"))
    seg.write_bytes(seg.read_bytes() + b"half-writ")
    assert DiskBuffer(tmp_path, max_lines=100).peek(10)[1] == ["a", "b"]


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", ["l5", "l6", "l7", "l8", "l9"]),
                                              ("drop_newest", ["l0", "l1", "l2", "l3", "l4"])])
def test_buffer_overflow_policy_is_applied_and_counted(tmp_path: Path, policy: str, kept: list[str]) -> None:
    buf = DiskBuffer(tmp_path, max_lines=5, overflow=policy, segment_lines=2)
    buf.append([f"l{i}" for i in range(3)])
    buf.append([f"l{i}" for i in range(3, 10)])
    assert buf.pending() == 5 and buf.dropped == 5
    assert buf.peek(10)[1] == kept


def test_unknown_overflow_policy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        DiskBuffer(tmp_path, max_lines=5, overflow="drop_random")


class _Count(Sink):
    """Counts the points the Influx sink was given, per snapshot."""

    name = "count"

    def __init__(self) -> None:
        self.points = 0
        self.snapshots = 0

    def write(self, snapshot: Snapshot) -> None:
        self.points += sum(len(line.split(" ")[1].split(",")) for line in snapshot_lines(snapshot))
        self.snapshots += 1


def _export(vm: VictoriaMetrics) -> list[dict]:  # type: ignore[type-arg]
    vm.flush()
    r = httpx.get(f"{vm.url}/api/v1/export", params={"match[]": '{__name__=~"gpufleet_.*"}'}, timeout=30)
    r.raise_for_status()
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def _points(vm: VictoriaMetrics) -> tuple[int, int]:
    """(points stored, duplicate timestamps within a series)."""
    total = dups = 0
    for series in _export(vm):
        ts = series["timestamps"]
        total += len(ts)
        dups += len(ts) - len(set(ts))
    return total, dups


@pytest.mark.server
@pytest.mark.slow
def test_victoria_outage_every_point_arrives_once(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    counter = _Count()
    influx = InfluxSink(f"{victoria.url}", tmp_path / "buffer", batch_size=200, flush_interval=0.2,
                        min_backoff=0.2, max_backoff=0.5)
    loop = CollectionLoop(SyntheticSource(2, mig=False, fields={"up", "clock_sm", "power_usage", "nvlink_up",
                                                                "xid_errors", "process_memory"}),
                          interval=1.0, sinks=[counter, influx]).start()
    try:
        loop.wait_cycles(2)
        wait_until(lambda: influx.pending() == 0 and influx.written > 0, 30, "first points delivered")
        victoria.stop()
        seen = loop.cycles
        wait_until(lambda: influx.errors > 0 and loop.cycles >= seen + 3, 30, "collection during the outage")
        assert influx.pending() > 0
        victoria.start()  # same port, same data folder
        loop.wait_cycles(loop.cycles + 1)
    finally:
        loop.stop()  # closes the sink: drains what is buffered
    assert influx.pending() == 0
    wait_until(lambda: _points(victoria)[0] >= counter.points, 30, "every point in VictoriaMetrics")
    total, dups = _points(victoria)
    assert (total, dups) == (counter.points, 0)
    assert counter.snapshots >= 6


@pytest.mark.server
def test_buffer_survives_an_exporter_restart(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    src = SyntheticSource(1, mig=False, fields={"up", "clock_sm", "temperature_gpu"})
    first = InfluxSink(dead, tmp_path / "buffer", min_backoff=0.1, max_backoff=0.2)
    expected = 0
    for t in range(5):
        snap = src.collect(1_700_000_000.0 + t)
        expected += sum(len(line.split(" ")[1].split(",")) for line in snapshot_lines(snap))
        first.write(snap)
    wait_until(lambda: first.errors > 0, 10, "a failed write")
    first.close(drain_timeout=0)
    assert first.pending() > 0
    second = InfluxSink(victoria.url, tmp_path / "buffer", flush_interval=0.1)
    wait_until(lambda: second.pending() == 0, 30, "buffer drained after restart")
    second.close()
    wait_until(lambda: _points(victoria)[0] >= expected, 30, "points in VictoriaMetrics")
    assert _points(victoria) == (expected, 0)
    dropped = dict(((f, lab), v) for f, lab, v in second.self_metrics())
    assert dropped[("influx_dropped_points", (("policy", "drop_oldest"),))] == 0


def _warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "gpufleet.exporter.sinks.influx" and r.levelno == logging.WARNING and needle in r.getMessage()]


def test_unreachable_influx_reported_within_one_interval(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there: connection refused
    interval = 2.0
    influx = InfluxSink(f"http://user:s3cret@127.0.0.1:{port}", tmp_path / "buffer", flush_interval=0.2,
                        min_backoff=0.1, max_backoff=0.2)
    loop = CollectionLoop(SyntheticSource(1, mig=False, fields={"up", "clock_sm"}), interval=interval,
                          sinks=[influx])
    caplog.set_level(logging.DEBUG, logger="gpufleet.exporter.sinks.influx")
    try:
        up = dict(((f, lab), v) for f, lab, v in influx.self_metrics())
        assert up[("influx_up", ())] == 1.0  # nothing tried yet
        loop.start()
        loop.wait_cycles(1)
        # reported before the next collection is due
        wait_until(lambda: _warnings(caplog, "unreachable"), interval, "the unreachable warning")
        loop.wait_cycles(3)  # retries go on: still one warning
    finally:
        loop.stop()
    warned = _warnings(caplog, "unreachable")
    assert len(warned) == 1, warned
    assert f"127.0.0.1:{port}" in warned[0] and "connection refused" in warned[0]
    assert "s3cret" not in caplog.text  # the URL's password is masked
    metrics = dict(((f, lab), v) for f, lab, v in influx.self_metrics())
    assert metrics[("influx_up", ())] == 0.0 and metrics[("influx_write_errors", ())] >= 2
    assert influx.pending() > 0  # nothing lost


@pytest.mark.server
def test_influx_recovery_is_logged_once(victoria: VictoriaMetrics, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gpufleet.exporter.sinks.influx")
    src = SyntheticSource(1, mig=False, fields={"up", "clock_sm"})
    influx = InfluxSink(victoria.url, tmp_path / "buffer", flush_interval=0.1, min_backoff=0.1, max_backoff=0.2)
    try:
        victoria.stop()
        influx.write(src.collect(1_700_000_000.0))
        wait_until(lambda: influx.errors > 1, 10, "failed writes")
        victoria.start()
        influx.write(src.collect(1_700_000_001.0))
        wait_until(lambda: influx.pending() == 0, 30, "buffer drained")
        wait_until(lambda: _warnings(caplog, "reachable again"), 5, "the recovery line")
    finally:
        influx.close()
    assert len(_warnings(caplog, "unreachable")) == 1 and len(_warnings(caplog, "reachable again")) == 1
    assert dict(((f, lab), v) for f, lab, v in influx.self_metrics())[("influx_up", ())] == 1.0
