"""History from the fleet's own store (issue #15 §2): the VictoriaMetrics reader that reads scraped exporter
series through /api/v1/export and buckets them itself, checked against values computed by hand on a real
VictoriaMetrics; and `gpufleet failure train|score --history URL` training one model for the whole fleet
and scoring every GPU in one batch from it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gpufleet.analytics.datasets import FAILURE_FIELDS, panel_from_reader
from gpufleet.analytics.fleet.history import ScrapedVictoriaReader, open_history, read_history
from gpufleet.analytics.history.prometheus import PrometheusReader
from gpufleet.exporter.errors import ConfigError
from typer.testing import CliRunner

from gpufleet.cli import app, run
from tests.servers import VictoriaMetrics

T0 = 1_790_000_100.0  # a multiple of 300 s


def _ident(uuid: str, node: str = "n1") -> dict[str, str]:
    return {"uuid": uuid, "gpu": "0", "node": node, "model": "A100", "job": "gpu", "instance": f"{node}:19835"}


def _line(name: str, labels: dict[str, str], ts: list[float], values: list[float]) -> str:
    return json.dumps({"metric": {"__name__": name, **labels}, "values": values,
                       "timestamps": [int(t * 1000) for t in ts]}) + "\n"


def _import(vm: VictoriaMetrics, lines: list[str]) -> None:
    r = httpx.post(f"{vm.url}/api/v1/import", content="".join(lines).encode(), timeout=30)
    assert r.status_code == 204, r.text
    vm.flush()


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> VictoriaMetrics:
    server = VictoriaMetrics(tmp_path_factory.mktemp("vm"))
    offs = [0, 60, 120, 290, 300, 610]
    temp = [40, 42, 44, 50, 60, 70]
    _import(server, [
        _line("gpufleet_gpu_temperature_celsius", _ident("GPU-a"), [T0 + o for o in offs], temp),
        _line("gpufleet_gpu_temperature_celsius", _ident("GPU-b"), [T0 + 5, T0 + 305], [30, 31]),
        # a labelled counter: two links, summed into the field in a panel
        _line("gpufleet_gpu_nvlink_crc_flit_errors_total", {**_ident("GPU-a"), "link": "0"}, [T0, T0 + 300], [1, 3]),
        _line("gpufleet_gpu_nvlink_crc_flit_errors_total", {**_ident("GPU-a"), "link": "1"}, [T0, T0 + 300], [10, 10]),
        # GPU-a is lost at T0 + 600 after being up
        _line("gpufleet_gpu_up", _ident("GPU-a"), [T0, T0 + 300, T0 + 600, T0 + 900], [1, 1, 0, 1]),
        _line("gpufleet_gpu_up", _ident("GPU-b"), [T0, T0 + 300, T0 + 600, T0 + 900], [1, 1, 1, 1]),
        # another job's series: left out by the selector
        _line("gpufleet_gpu_temperature_celsius", {**_ident("GPU-x"), "job": "other"}, [T0], [99]),
    ])
    yield server
    server.stop()


def _col(df, uuid: str, col: str = "temperature_gpu") -> list[float]:  # type: ignore[no-untyped-def]
    return [float(v) for v in df[df["uuid"] == uuid][col]]


@pytest.mark.parametrize(("agg", "want"), [("mean", [44.0, 60.0, 70.0]), ("min", [40.0, 60.0, 70.0]),
                                           ("max", [50.0, 60.0, 70.0]), ("last", [50.0, 60.0, 70.0])])
def test_export_buckets_are_exact(vm: VictoriaMetrics, agg: str, want: list[float]) -> None:
    with ScrapedVictoriaReader(vm.url, selector={"job": "gpu"}) as reader:
        df = reader.read(["temperature_gpu"], T0, T0 + 900, step=300, agg=agg)
    # buckets [t, t + 300): GPU-a's samples at 0, 60, 120, 290 | 300 | 610 s
    assert _col(df, "GPU-a") == want
    starts = sorted({t.timestamp() for t in df["ts"]})
    assert starts == [T0, T0 + 300, T0 + 600]
    assert sorted(df["uuid"].astype(str).unique()) == ["GPU-a", "GPU-b"]  # GPU-x: another job
    assert _col(df, "GPU-b") == [30.0, 31.0]


def test_raw_read_and_panel(vm: VictoriaMetrics) -> None:
    with ScrapedVictoriaReader(vm.url, selector={"job": "gpu"}) as reader:
        raw = reader.read(["temperature_gpu"], T0, T0 + 900)
        assert _col(raw, "GPU-a") == [40.0, 42.0, 44.0, 50.0, 60.0, 70.0]
        fields = ("temperature_gpu", "nvlink_crc_flit_errors")
        panel = reader.panel_grid(T0, T0 + 900, 300, fields)
        # the generic frame path (Prometheus query API) gives the same for GPU-b's single-sample buckets
        generic = panel_from_reader(PrometheusReader(vm.url, selector={"job": "gpu"}), T0, T0 + 900, 300, fields)
    a = panel.uuids.index("GPU-a")
    np.testing.assert_array_equal(panel.values[a, :, 0], [44.0, 60.0, 70.0])
    np.testing.assert_array_equal(panel.values[a, :, 1][:2], [11.0, 13.0])  # links summed (last per bucket)
    assert np.isnan(panel.values[a, 2, 1])
    b, gb = panel.uuids.index("GPU-b"), generic.uuids.index("GPU-b")
    np.testing.assert_array_equal(panel.values[b], generic.values[gb])


def test_read_history_labels_lost_gpus(vm: VictoriaMetrics) -> None:
    with open_history(vm.url, selector={"job": "gpu"}) as reader:
        assert isinstance(reader, ScrapedVictoriaReader)  # kind=auto asked the server
        hist = read_history(reader, T0, T0 + 1200, step=300, chunk_s=600)  # two chunks
    assert sorted(hist.panel.uuids) == ["GPU-a", "GPU-b"] and hist.panel.fields == FAILURE_FIELDS
    assert list(hist.failures) == ["GPU-a"] and list(hist.failures["GPU-a"]) == [T0 + 600]
    t = hist.panel.fields.index("temperature_gpu")
    np.testing.assert_array_equal(hist.panel.values[hist.panel.uuids.index("GPU-a"), :, t], [44, 60, 70, np.nan])


def test_bad_history_target() -> None:
    with pytest.raises(ConfigError, match="neither an http"):
        open_history("/no/such/folder")
    with pytest.raises(ConfigError, match="history kind"):
        open_history("http://127.0.0.1:1", kind="influx")


def _fleet_lines(now: float, gpus: int = 12, hours: float = 30.0) -> list[str]:
    """``hours`` of 5-minute history for ``gpus`` GPUs on 3 nodes; every third GPU gets hot, then
    fails (``gpu_up`` 0) at a different time."""
    rng = np.random.default_rng(1)
    ts = list(now - 300.0 * np.arange(int(hours * 12), -1, -1))
    out = []
    for i in range(gpus):
        ident = {**_ident(f"GPU-{i:02d}", f"n{i % 3}"), "gpu": str(i // 3)}
        fails = i % 3 == 0
        fail_at = len(ts) - 1 - (40 + 30 * i) if fails else None
        temp = 50 + rng.normal(0, 1, len(ts))
        up = np.ones(len(ts))
        if fail_at is not None:
            temp[fail_at - 24:fail_at] += np.linspace(0, 45, 24)  # the rules' signal before the failure
            up[fail_at:fail_at + 6] = 0
        out.append(_line("gpufleet_gpu_temperature_celsius", ident, ts, list(np.round(temp, 1))))
        out.append(_line("gpufleet_gpu_power_usage_watts", ident, ts, list(np.round(200 + temp, 1))))
        out.append(_line("gpufleet_gpu_up", ident, ts, list(up)))
    return out


def test_failure_train_and_score_from_the_fleet_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = VictoriaMetrics(tmp_path / "vm")
    try:
        now = float(int(time.time()) // 300 * 300)
        _import(server, _fleet_lines(now))
        runner = CliRunner()
        reg = tmp_path / "models"
        r = runner.invoke(app, ["failure", "train", "--history", server.url, "--history-selector", '{job="gpu"}',
                                "--days", "1.5", "--model", "rules", "--step", "300", "--window-h", "2",
                                "--registry", str(reg)])
        assert r.exit_code == 0, r.output
        info = json.loads(r.output[r.output.index("{"):])
        assert info["version"] == "v0001"
        r = runner.invoke(app, ["failure", "score", "--history", server.url, "--registry", str(reg), "--json",
                                "--top", "3"])
        assert r.exit_code == 0, r.output
        scores = json.loads(r.output[r.output.index("{"):])
        assert sorted(scores["risk"]) == [f"GPU-{i:02d}" for i in range(12)]  # every GPU, one batch
        assert len(scores["top"]) == 3
        # neither or both of --store / --history: one clear error, exit 2
        capsys.readouterr()
        assert run(["failure", "score", "--registry", str(reg)]) == 2
        assert "exactly one of --store" in capsys.readouterr().err
        assert run(["failure", "score", "--history", "http://127.0.0.1:1", "--registry", str(reg)]) == 5
        err = capsys.readouterr().err
        assert "unreachable" in err and "Traceback" not in err
    finally:
        server.stop()
