"""Defaults that fit a shared host: the XDG data folder (never the working directory) and ports that clash
with no common GPU or node exporter, the service's /metrics apart from the exporter's."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.settings import Settings, default_data_dir, load_settings

TAKEN = {9100: "node_exporter", 9400: "dcgm-exporter", 9835: "nvidia_gpu_exporter", 9090: "Prometheus",
         9093: "Alertmanager", 8428: "VictoriaMetrics"}


def test_data_folder_follows_xdg_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "gpufleet"
    assert load_settings().data_dir == tmp_path / "xdg" / "gpufleet"
    # overridable: the environment variable and flags win
    monkeypatch.setenv("GPUFLEET_DATA_DIR", str(tmp_path / "mine"))
    assert load_settings().data_dir == tmp_path / "mine"
    assert load_settings(None, {"data_dir": str(tmp_path / "flag")}).data_dir == tmp_path / "flag"


def test_data_folder_without_xdg_is_under_home_never_the_working_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("GPUFLEET_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "gpufleet"
    # the spec: a relative XDG_DATA_HOME is invalid and ignored
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "gpufleet"
    assert not default_data_dir().is_relative_to(Path.cwd() / "relative")


def test_default_ports_clash_with_nothing_common_and_differ() -> None:
    s = Settings()
    exporter = int(s.exporter.listen.rsplit(":", 1)[1])
    service_metrics = int(s.serve.metrics_listen.rsplit(":", 1)[1])
    api = int(s.api.listen.rsplit(":", 1)[1])
    assert exporter not in TAKEN and service_metrics not in TAKEN, (exporter, service_metrics)
    assert len({exporter, service_metrics, api}) == 3
    assert s.exporter.listen.startswith("127.0.0.1:") and s.serve.metrics_listen.startswith("127.0.0.1:")
