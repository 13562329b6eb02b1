"""Dashboards: valid Grafana models, only catalogue metrics, stable output, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from gpufleet.dashboards.build import SCHEMA_VERSION, build_all, write_all
from gpufleet.dashboards.validate import check_model, metric_names, queries

from gpufleet.cli import main


@pytest.mark.parametrize("names", ["native", "dcgm"])
def test_every_dashboard_is_a_valid_model(names: str) -> None:
    models = build_all(names)
    assert set(models) == {"fleet", "gpu", "health", "processes", "capacity", "allocator", "self"}
    uids = [m["uid"] for m in models.values()]
    assert len(set(uids)) == len(uids)
    for key, model in models.items():
        assert model["schemaVersion"] == SCHEMA_VERSION
        assert check_model(model) == [], key
        assert sum(1 for _ in queries(model)) > 0


def test_validator_catches_unknown_metrics_overlaps_and_missing_units() -> None:
    model = build_all()["fleet"]
    panel = next(p for p in model["panels"] if p["type"] == "timeseries")
    panel["targets"][0]["expr"] = 'sum(gpufleet_gpu_temperature_kelvin{node=~"$node"})'
    panel["fieldConfig"]["defaults"]["unit"] = ""
    panel["description"] = ""
    other = model["panels"][-1]
    other["gridPos"] = dict(panel["gridPos"])
    problems = "\n".join(check_model(model))
    assert "gpufleet_gpu_temperature_kelvin" in problems
    assert "has no unit" in problems and "has no description" in problems and "overlap" in problems


def test_metric_name_extraction() -> None:
    expr = 'sum by (node) (increase(gpufleet_gpu_xid_errors_total{xid=~"79|48",node=~"$node"}[1h])) / ignoring(x) up'
    assert metric_names(expr) == {"gpufleet_gpu_xid_errors_total", "up"}
    assert metric_names('label_values(gpufleet_gpu_info{node=~"$node"}, uuid)') == {"gpufleet_gpu_info"}


def test_gpu_detail_shows_every_device_field() -> None:
    from gpufleet.exporter.catalogue import catalogue

    exprs = " ".join(e for _, e in queries(build_all()["gpu"]))
    wanted = [m for m in catalogue() if m.scope == "device" and m.type != "info"
              and m.family not in ("self",)]
    missing = [m.name for m in wanted if m.name not in exprs]
    assert not missing


def test_dcgm_mode_uses_dcgm_names_and_labels() -> None:
    exprs = " ".join(e for _, e in queries(build_all("dcgm")["fleet"]))
    assert "DCGM_FI_DEV_GPU_TEMP{Hostname=~\"$node\"}" in exprs
    assert "gpufleet_gpu_temperature_celsius" not in exprs


def test_build_is_stable_and_writes_provisioning(tmp_path: Path) -> None:
    a = write_all(tmp_path / "a")
    b = write_all(tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    provider = yaml.safe_load((tmp_path / "a" / "dashboards" / "gpufleet.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    ds = yaml.safe_load((tmp_path / "a" / "datasources" / "gpufleet.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"


def test_cli_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["dashboards", "build", "--out", str(tmp_path), "--names", "dcgm"])
    files = sorted((tmp_path / "dashboards").glob("*.json"))
    assert len(files) == 7
    assert json.loads(files[0].read_text())["title"].endswith("(dcgm names)")


def test_cli_rejects_unknown_naming_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "build", "--out", str(tmp_path), "--names", "weird"])
    assert exc.value.code == 2
    assert "native or dcgm" in capsys.readouterr().err


def test_docs_are_current() -> None:
    from gpufleet.dashboards.docs import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "dashboards.md"
    assert doc.read_text() == render(), "regenerate: python -m gpufleet.dashboards.docs > docs/dashboards.md"


def test_thresholds_match_the_alert_pack() -> None:
    from gpufleet.alerting.rules import load_rules
    from gpufleet.dashboards import health
    from gpufleet.dashboards.panels import FAILURE_RISK_WARN, TEMPERATURE_WARN_C

    rules = {r.name: r for r in load_rules([], include_pack=True).rules}
    assert rules["GpuTemperatureHigh"].threshold == TEMPERATURE_WARN_C
    assert rules["GpuFailureRiskHigh"].threshold == FAILURE_RISK_WARN
    pack_hw = {int(v) for r in load_rules([], include_pack=True).rules if r.name == "GpuXidHardwareCritical"
               for k, vs in r.match if k == "xid" for v in vs}
    assert pack_hw == set(health.HARDWARE_XIDS)


@pytest.mark.parametrize("mode", ["native", "dcgm"])
def test_gpu_detail_has_info_table_mig_compute_mode_and_fabric_panels(mode: str) -> None:
    model = build_all(mode)["gpu"]
    panels = {p["title"]: p for p in model["panels"]}
    info = panels["GPU info"]
    assert info["type"] == "table"
    renamed = next(t for t in info["transformations"] if t["id"] == "organize")["options"]["renameByName"]
    wanted = {"Model", "Driver"} | ({"VBIOS", "Serial"} if mode == "native" else set())
    assert wanted <= set(renamed.values())
    for title, metric in (("Compute mode", "gpufleet_gpu_compute_mode"),
                          ("NVSwitch fabric state", "gpufleet_gpu_fabric_state"),
                          ("Recovery action", "gpufleet_gpu_recovery_action")):
        p = panels[title]
        assert metric in p["targets"][0]["expr"]
        assert p["fieldConfig"]["defaults"]["mappings"], title  # numbers shown as names
    mig_label = "GPU_I_ID" if mode == "dcgm" else "gpu_instance_id"
    for title in ("MIG instance memory used", "MIG instance memory used (share)", "MIG instance utilization"):
        assert f'{mig_label}!=""' in panels[title]["targets"][0]["expr"]
