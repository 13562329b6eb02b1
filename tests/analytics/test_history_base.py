"""Reader interface: argument checks, the frame's shape, unreachable backends, Flux construction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from gpufleet.analytics.history.base import frame_from_series, to_seconds
from gpufleet.analytics.history.prometheus import PrometheusReader
from gpufleet.analytics.history.store import StoreReader
from gpufleet.analytics.history.victoria import InfluxReader, VictoriaReader
from gpufleet.exporter.errors import BackendUnavailable, ConfigError
from gpufleet.exporter.store import HistoryStore

from tests.servers import free_port
from tests.store.helpers import T0, devices, snapshot


def test_store_reader_frame_shape(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h") as s:
        for k in range(90):
            s.write(snapshot(k, devices()))
    r = StoreReader(tmp_path / "h")
    since = dt.datetime.fromtimestamp(T0, dt.UTC)
    df = r.read(["power_usage", "util_gpu", "nvlink_bandwidth"], since, T0 + 900)
    assert list(df.columns) == ["ts", "uuid", "nvlink_bandwidth{link=1}", "power_usage", "util_gpu"]
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]" and isinstance(df["uuid"].dtype, pd.CategoricalDtype)
    assert len(df) == 90 * 4 and df["ts"].is_monotonic_increasing
    hourly = r.read(["power_usage"], T0, T0 + 900, step=300, agg="max")
    assert (hourly["ts"].astype("int64") % 300_000_000_000 == 0).all()
    assert r.read(["power_usage"], T0 - 100, T0 - 50).empty
    with pytest.raises(ConfigError, match="until"):
        r.read(["power_usage"], T0, T0)
    with pytest.raises(ConfigError, match="agg"):
        r.read(["power_usage"], T0, T0 + 1, agg="p99")


def test_time_arguments_and_frame_builder() -> None:
    assert to_seconds("2025-01-01T00:00:00Z") == 1735689600.0
    assert to_seconds(dt.datetime(2025, 1, 1)) == 1735689600.0  # naive = UTC
    import numpy as np

    df = frame_from_series([("b", "x", np.array([2000, 1000]), np.array([2.0, 1.0])),
                            ("a", "y{k=1}", np.array([1000]), np.array([5.0]))])
    assert list(df.columns) == ["ts", "uuid", "x", "y{k=1}"]
    assert list(df["uuid"].astype(str)) == ["a", "b", "b"]
    assert df["x"].isna().tolist() == [True, False, False]


@pytest.mark.parametrize("cls", [PrometheusReader, VictoriaReader])
def test_unreachable_backend_names_the_url(cls: type[PrometheusReader]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    reader = cls(url, retries=1, backoff=0.01)
    with pytest.raises(BackendUnavailable, match=url.replace(".", r"\.")):
        reader.read(["temperature_gpu"], T0, T0 + 60, step=10)
    with pytest.raises(ConfigError, match="not in the metric catalogue"):
        reader.read(["no_such_field"], T0, T0 + 60)


def test_influx_reader_builds_flux_and_reports_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = InfluxReader(url, token="t", bucket="fleet")
    q = r.flux("nvlink_tx_bytes", 1_735_689_600_000, 1_735_689_660_000, 10_000, ["GPU-1"], "max")
    assert 'from(bucket: "fleet")' in q
    assert "range(start: 2025-01-01T00:00:00.000000Z, stop: 2025-01-01T00:01:00.000000Z)" in q
    assert 'r._measurement == "gpufleet_nvlink" and r._field == "nvlink_tx_bytes"' in q
    assert 'r.uuid == "GPU-1"' in q and 'aggregateWindow(every: 10000ms, fn: max' in q
    assert 'timeSrc: "_start"' in q and '"link"' in q
    with pytest.raises(BackendUnavailable, match="InfluxDB at"):
        r.read(["temperature_gpu"], T0, T0 + 60)
    r.close()
