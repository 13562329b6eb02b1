"""The collection loop: decoupled from scraping, interval bounds, staleness, self-metrics."""

from __future__ import annotations

import pytest
from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.loop import CollectionLoop
from gpufleet.exporter.schema import Snapshot
from gpufleet.exporter.sinks.base import Sink
from gpufleet.exporter.sinks.prometheus import PrometheusSink
from gpufleet.exporter.sources.base import Source

from tests.exporter.synthetic import SyntheticSource


class _Recorder(Sink):
    name = "recorder"

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.closed = False

    def write(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    def close(self) -> None:
        self.closed = True


def test_interval_must_be_at_least_one_second() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        CollectionLoop(SyntheticSource(1), interval=0.5)
    assert CollectionLoop(SyntheticSource(1)).interval == 10.0


def test_unknown_collector_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown collector"):
        CollectionLoop(SyntheticSource(1), collectors=["clocks", "warp_drive"])


def test_scrapes_do_not_collect() -> None:
    src = SyntheticSource(2)
    loop = CollectionLoop(src, interval=1)
    sink = PrometheusSink(loop)
    loop.collect_once(now=1000.0)
    for _ in range(5):
        sink.render(now=1000.5)
    assert src.calls == 1


def test_background_thread_feeds_sinks_and_stop_closes_them() -> None:
    rec = _Recorder()
    loop = CollectionLoop(SyntheticSource(1), interval=1, sinks=[rec]).start()
    loop.wait_cycles(2, timeout=10)
    loop.stop()
    assert len(rec.snapshots) >= 2 and rec.closed
    assert rec.snapshots[1].ts > rec.snapshots[0].ts


def test_collectors_filter_keeps_only_those_families() -> None:
    loop = CollectionLoop(SyntheticSource(1, mig=False), interval=1, collectors=["clocks", "power"])
    snap = loop.collect_once(now=100.0)
    assert snap is not None
    fields = {s.field for s in snap.samples}
    assert "clock_sm" in fields and "power_usage" in fields
    assert "temperature_gpu" not in fields
    assert {s.collector for s in snap.stats} == {"clocks", "power"}


def test_stale_snapshot_is_never_served_as_current() -> None:
    src = SyntheticSource(2, mig=False)
    loop = CollectionLoop(src, interval=2)
    sink = PrometheusSink(loop)
    loop.collect_once(now=1000.0)
    fresh = sink.render(now=1005.9).decode()  # 2.95 intervals old: still current
    assert "gpufleet_gpu_temperature_celsius{" in fresh
    assert 'gpufleet_collector_success{collector="thermal"} 1' in fresh
    stale = sink.render(now=1006.1).decode()  # older than 3 intervals
    assert "gpufleet_gpu_temperature_celsius" not in stale
    assert "gpufleet_gpu_up{" not in stale
    assert 'gpufleet_collector_success{collector="thermal"} 0' in stale
    assert 'gpufleet_collector_last_success_timestamp_seconds{collector="thermal"} 1000' in stale
    assert "gpufleet_snapshot_age_seconds 6.1" in stale


def test_a_frozen_device_is_dropped_the_others_keep_reporting() -> None:
    src = SyntheticSource(2, mig=False)
    loop = CollectionLoop(src, interval=1)
    sink = PrometheusSink(loop)
    loop.collect_once(now=100.0)
    frozen = src.devices()[0].uuid
    src.frozen.add(frozen)
    for t in (101.0, 102.0, 103.0, 104.0):
        loop.collect_once(now=t)
    text = sink.render(now=104.0).decode()
    assert frozen not in text
    assert src.devices()[1].uuid in text
    assert loop.view(now=104.0).stale == frozenset({frozen})


def test_a_failing_collector_reports_success_zero_and_keeps_last_success() -> None:
    src = SyntheticSource(1, mig=False)
    loop = CollectionLoop(src, interval=1)
    sink = PrometheusSink(loop)
    loop.collect_once(now=10.0)
    src.fail_collector = "power"
    loop.collect_once(now=11.0)
    text = sink.render(now=11.0).decode()
    assert 'gpufleet_collector_success{collector="power"} 0' in text
    assert 'gpufleet_collector_success{collector="clocks"} 1' in text
    assert 'gpufleet_collector_last_success_timestamp_seconds{collector="power"} 10' in text


class _Broken(Source):
    name = "broken"

    def devices(self) -> list:  # type: ignore[type-arg]
        return []

    def collect(self, now: float) -> Snapshot:
        raise RuntimeError("driver went away")


def test_a_source_that_raises_does_not_kill_the_loop() -> None:
    loop = CollectionLoop(_Broken(), interval=1)
    assert loop.collect_once(now=5.0) is None
    view = loop.view(now=5.0)
    assert [(c.collector, c.success, c.error) for c in view.collectors] == [("broken", False, "driver went away")]
