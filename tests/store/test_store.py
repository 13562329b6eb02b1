"""HistoryStore: round trip, tiers and rollups, retention, events, labels, devices, one writer."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from gpufleet.exporter.errors import ConfigError, Conflict, NotFound
from gpufleet.exporter.schema import Event, EventKind
from gpufleet.exporter.store import HistoryStore, layout
from gpufleet.exporter.store.layout import list_segments

from tests.store.helpers import T0, devices, snapshot, value


def _fill(path: Path, cycles: int, interval: float = 10.0, **kw) -> HistoryStore:  # type: ignore[no-untyped-def]
    devs = devices()
    s = HistoryStore(path, **kw)
    for k in range(cycles):
        s.write(snapshot(k, devs, interval))
    return s


def test_raw_round_trip_exact_values_and_absent_fields(tmp_path: Path) -> None:
    with _fill(tmp_path / "h", 500) as s:  # crosses a window boundary: segments + open log
        assert os.listdir(tmp_path / "h" / "raw") and os.listdir(tmp_path / "h" / "wal")
        r = s.read(["temperature_gpu", "util_gpu", "nvlink_bandwidth"], resolution="raw")
    assert len(r) == 500 * 4
    assert set(r.columns) == {"temperature_gpu", "util_gpu", "nvlink_bandwidth{link=1}"}
    k = np.round((r.ts - T0) / 10).astype(int)
    i = np.array([int(u.rsplit("-", 1)[1]) for u in r.uuid])
    expect = np.array([value(kk, ii, "temperature_gpu") for kk, ii in zip(k, i, strict=True)])
    np.testing.assert_array_equal(r.columns["temperature_gpu"], expect)
    # util_gpu is absent (NaN) on odd GPUs, never zero
    assert np.isnan(r.columns["util_gpu"][i % 2 == 1]).all()
    assert not np.isnan(r.columns["util_gpu"][i % 2 == 0]).any()
    # sorted by ts then uuid
    assert np.all(np.diff(r.ts_ms) >= 0)
    df = r.to_pandas()
    assert list(df.columns[:2]) == ["ts", "uuid"] and str(df["ts"].dt.tz) == "UTC"


def test_reopen_reads_everything_once(tmp_path: Path) -> None:
    _fill(tmp_path / "h", 130).close()
    s = HistoryStore(tmp_path / "h")
    devs = devices()
    for k in range(130, 260):
        s.write(snapshot(k, devs))
    r = s.read(["power_usage"], resolution="raw")
    assert len(r) == 260 * 4
    assert len(np.unique(r.ts_ms * 10 + r.codes)) == len(r)
    s.close()
    assert not os.listdir(tmp_path / "h" / "wal")


@pytest.mark.parametrize("resolution,res_s", [("1m", 60), ("1h", 3600)])
def test_rollups_match_numpy(tmp_path: Path, resolution: str, res_s: int) -> None:
    with _fill(tmp_path / "h", 1000) as s:  # 10,000 s: several hours, partly still in the log
        raw = s.read(["power_usage"], resolution="raw")
        for agg in ("mean", "min", "max", "last"):
            r = s.read(["power_usage"], resolution=resolution, agg=agg)
            assert r.resolution == resolution
            bucket = raw.ts_ms // (res_s * 1000) * res_s * 1000
            for code in range(len(raw.uuids)):
                m = raw.codes == code
                b, v = bucket[m], raw.columns["power_usage"][m]
                starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
                fn = {"mean": np.add.reduceat, "min": np.minimum.reduceat, "max": np.maximum.reduceat}
                if agg == "last":
                    exp = v[np.r_[starts[1:], len(v)] - 1]
                elif agg == "mean":
                    exp = fn[agg](v, starts) / np.diff(np.r_[starts, len(v)])
                else:
                    exp = fn[agg](v, starts)
                got_m = r.codes == code
                np.testing.assert_array_equal(r.ts_ms[got_m], b[starts])
                np.testing.assert_allclose(r.columns["power_usage"][got_m], exp, rtol=1e-12)


def test_step_aggregation_across_partial_windows(tmp_path: Path) -> None:
    devs = devices()
    for lo, hi in ((0, 97), (97, 301), (301, 420)):  # each close() commits a partial window
        with HistoryStore(tmp_path / "h") as s:
            for k in range(lo, hi):
                s.write(snapshot(k, devs))
    s = HistoryStore(tmp_path / "h")
    raw = s.read(["temperature_gpu"], resolution="raw")
    for res, step in (("raw", 300), ("1m", 300), ("1h", 3600), ("raw", 3600)):
        r = s.read(["temperature_gpu"], step=step, resolution=res)
        assert np.all(r.ts_ms % (step * 1000) == 0)
        for code in range(len(r.uuids)):
            m = raw.codes == code
            b = raw.ts_ms[m] // (step * 1000) * step * 1000
            vals = raw.columns["temperature_gpu"][m]
            exp = [vals[b == x].mean() for x in np.unique(b)]
            np.testing.assert_allclose(r.columns["temperature_gpu"][r.codes == code], exp, rtol=1e-12)
    assert s.read(["temperature_gpu"], step=300).resolution == "1m"
    assert s.read(["temperature_gpu"], step=7200).resolution == "1h"


def test_window_filters_and_uuid_selection(tmp_path: Path) -> None:
    with _fill(tmp_path / "h", 400) as s:
        since, until = T0 + 1000, T0 + 2000
        r = s.read(["power_usage"], uuids=["GPU-node-a-2"], since=since, until=until, resolution="raw")
        assert set(r.uuid) == {"GPU-node-a-2"}
        assert r.ts.min() >= since and r.ts.max() < until
        assert len(r) == 100
        assert len(s.read(["no_such_field"])) == 0 or not s.read(["no_such_field"]).columns


def test_retention_drops_old_raw_and_keeps_rollups(tmp_path: Path) -> None:
    # 3 days at 10-minute cycles; raw kept 1 day, 1-minute rollups 2 days, hourly 10 days.
    s = _fill(tmp_path / "h", 3 * 144, interval=600, raw_retention_days=1, minute_retention_days=2,
              hour_retention_days=10, fsync=False)
    s.close()
    s = HistoryStore(tmp_path / "h")
    first, last = s.span()
    assert first is not None and last is not None
    assert last - first > 2.5 * 86400  # the hourly tier still reaches back
    raw = s.read(["power_usage"], resolution="raw")
    # retention drops whole segments: compacted raw days go once their last sample is too old
    assert first + 0.5 * 86400 < raw.ts.min() and raw.ts.min() > last - 2 * 86400 - 3600
    old = s.read(["power_usage"], since=T0, until=T0 + 3600)
    assert old.resolution == "1h" and len(old) > 0


def test_events_labels_devices_span(tmp_path: Path) -> None:
    with _fill(tmp_path / "h", 400) as s:
        label = Event(T0 + 123, EventKind.FAILURE, "GPU-node-a-3", "node-a", 79, {"mode": "fell_off_bus"})
        s.write_labels([label])
        ev = s.events()
        assert [e.ts for e in ev] == [T0 + k * 10 for k in range(400) if k % 50 == 5]
        assert ev[0].kind == EventKind.XID and ev[0].code == 31 and ev[0].detail == {"msg": "mmu fault"}
        assert s.events(kinds=["gpu_lost"]) == []
        assert s.labels() == [label]
        assert all(e.kind != EventKind.FAILURE for e in ev)  # labels are kept apart from telemetry
        devs = s.devices()
        assert [d.uuid for d in devs] == [d.uuid for d in devices()]
        assert devs[0].memory_total_bytes == 80 * 2**30
        assert s.span() == (T0, T0 + 3990)
        assert "up" in s.fields() and "nvlink_bandwidth{link=1}" in s.fields()
    s2 = HistoryStore(tmp_path / "h")
    assert s2.labels() == [label] and len(s2.events()) == 8
    assert s2.size_bytes() > 0
    up = s2.read(["up"], resolution="raw")
    assert set(up.columns["up"]) == {1.0}


def test_one_writer_only_and_bad_arguments(tmp_path: Path) -> None:
    a = _fill(tmp_path / "h", 3)
    b = HistoryStore(tmp_path / "h")
    assert len(b.read(["power_usage"])) == 12  # reading never conflicts
    with pytest.raises(Conflict, match="another process"):
        b.write(snapshot(3, devices()))
    a.close()
    b.write(snapshot(3, devices()))
    b.close()
    with pytest.raises(NotFound):
        HistoryStore(tmp_path / "missing", create=False)
    with pytest.raises(ConfigError, match="agg"):
        b.read(["power_usage"], agg="median")
    with pytest.raises(ConfigError, match="resolution"):
        b.read(["power_usage"], resolution="5m")
    assert math.isclose(HistoryStore(tmp_path / "h").span()[1] or 0, T0 + 30)


def test_closed_days_are_compacted_without_changing_answers(tmp_path: Path) -> None:
    s = _fill(tmp_path / "h", 3 * 144, interval=600, fsync=False, compaction=False)
    s.close()
    before = {res: HistoryStore(tmp_path / "h").read(["power_usage", "util_gpu"], resolution=res)
              for res in ("raw", "1m", "1h")}
    events_before = HistoryStore(tmp_path / "h").events()
    assert len(events_before) == 9
    s = HistoryStore(tmp_path / "h", fsync=False)
    s.write(snapshot(3 * 144, devices(), 600))
    s.close()  # retention + compaction run when a window is committed
    for res in ("raw", "1m"):
        segs = list_segments(tmp_path / "h" / res)
        assert sum(s.tmax - s.tmin > 20 * 3_600_000 for s in segs) >= 2  # two closed days merged
        assert not layout.shadowed_segments(tmp_path / "h" / res)  # the merged-away files are gone
    after = HistoryStore(tmp_path / "h")
    assert after.events() == events_before
    assert len(list_segments(tmp_path / "h" / "events")) < len(events_before)
    for res, want in before.items():
        got = after.read(["power_usage", "util_gpu"], resolution=res)
        np.testing.assert_array_equal(got.ts_ms[:len(want)], want.ts_ms)
        for c in want.columns:
            np.testing.assert_array_equal(got.columns[c][:len(want)], want.columns[c])


def test_info_and_per_process_series_are_not_columns(tmp_path: Path) -> None:
    from gpufleet.exporter.schema import Sample

    devs = devices()
    snap = snapshot(0, devs)
    snap.samples += [Sample(devs[0].uuid, "info", 1.0, snap.ts, (("driver_version", "550.54"), ("serial", "123"))),
                     Sample(devs[0].uuid, "process_memory", 2.0**30, snap.ts,
                            (("container", "c"), ("namespace", "n"), ("pid", "4242"), ("pod", "p")))]
    with HistoryStore(tmp_path / "h") as s:
        s.write(snap)
        assert not [f for f in s.fields() if f.startswith(("info", "process_"))]
        assert "temperature_gpu" in s.fields()


def test_one_sample_per_minute_keeps_only_the_mean_and_reads_every_agg(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    devs = devices()
    s = HistoryStore(tmp_path / "h", fsync=False)
    for k in range(24 * 60 + 90):  # a day and a half at 60 s, then 10 s: a mixed day to compact
        s.write(snapshot(k, devs, 60.0))
    for k in range(3000):  # past the next midnight, so the mixed day is compacted
        s.write(snapshot(k, devs, 10.0, t0=T0 + (24 * 60 + 90) * 60))
    s.close()
    names = pq.read_schema(list_segments(tmp_path / "h" / "1m")[0].path).names
    assert "power_usage:mean" in names and "power_usage:max" not in names
    r = HistoryStore(tmp_path / "h")
    until = (T0 + 24 * 3600) // 60 * 60  # minute-aligned: the same samples in both tiers
    raw = r.read(["power_usage"], resolution="raw", until=until)
    for agg in ("min", "max", "last", "mean"):
        m = r.read(["power_usage"], resolution="1m", agg=agg, until=until)
        np.testing.assert_array_equal(m.columns["power_usage"], raw.columns["power_usage"])
    assert sum(g.tmax - g.tmin > 8 * 3_600_000 for g in list_segments(tmp_path / "h" / "1m")) == 2  # 2 days merged
    mixed = (until, until + 10 * 3600)  # 60 s then 10 s samples, compacted into one file
    raw = r.read(["power_usage"], resolution="raw", since=mixed[0], until=mixed[1], step=60, agg="max")
    m = r.read(["power_usage"], resolution="1m", agg="max", since=mixed[0], until=mixed[1], step=60)
    np.testing.assert_array_equal(m.columns["power_usage"], raw.columns["power_usage"])
