"""The exported rules pass `promtool check rules` and per-rule `promtool test rules` (firing and quiet)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from gpufleet.alerting.export import export
from gpufleet.alerting.rules import load_rules

from tests.alerting.cases import cases, promtool_test
from tests.servers import require_binary

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export(load_rules(), out, names="both")
    return out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120)


def test_promtool_check_rules(exported: Path) -> None:
    promtool = require_binary("promtool")
    for name in ("gpufleet-rules.yml", "gpufleet-rules-dcgm.yml"):
        r = _run(promtool, "check", "rules", str(exported / name))
        assert r.returncode == 0, r.stdout + r.stderr
        n_rules = len(load_rules([], include_pack=True).rules)  # every pack rule is exported, none dropped
        assert f"SUCCESS: {n_rules} rules found" in r.stdout


def test_amtool_check_config(exported: Path) -> None:
    amtool = require_binary("amtool")
    r = _run(amtool, "check-config", str(exported / "alertmanager.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(load_rules([], include_pack=True).inhibit)} inhibit rules" in r.stdout  # every one exported


@pytest.mark.parametrize("naming", ["native", "dcgm"])
def test_promtool_unit_tests_every_rule(exported: Path, naming: str) -> None:
    promtool = require_binary("promtool")
    rules = load_rules()
    all_cases = [c for r in rules.rules for c in cases(r)]
    assert {c.rule.name for c in all_cases} == set(rules.names())
    rule_file = "gpufleet-rules.yml" if naming == "native" else "gpufleet-rules-dcgm.yml"
    test_file = exported / f"tests-{naming}.yml"
    test_file.write_text(yaml.safe_dump(promtool_test(all_cases, rule_file, naming), sort_keys=False,
                                        allow_unicode=True))
    r = _run(promtool, "test", "rules", str(test_file))
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert "SUCCESS" in r.stdout


def test_promtool_hysteresis(exported: Path) -> None:
    """90 °C fires; 83 °C (between clear and threshold) keeps it firing; 79 °C resolves it."""
    promtool = require_binary("promtool")
    sel = 'gpufleet_gpu_temperature_celsius{uuid="GPU-1",gpu="0",node="n1",model="m"}'
    base = {"alertname": "GpuTemperatureHigh", "severity": "warning", "scope": "gpu",
            "uuid": "GPU-1", "gpu": "0", "node": "n1", "model": "m"}
    doc = {"rule_files": ["gpufleet-rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": sel, "values": "90x7 83x5 79x3"}],
        "alert_rule_test": [
            {"eval_time": "6m", "alertname": "GpuTemperatureHigh", "exp_alerts": [{"exp_labels": base}]},
            {"eval_time": "11m", "alertname": "GpuTemperatureHigh", "exp_alerts": [{"exp_labels": base}]},
            {"eval_time": "14m", "alertname": "GpuTemperatureHigh", "exp_alerts": []},
        ]}]}
    # annotations are checked by the per-rule tests; here only labels matter
    for t in doc["tests"][0]["alert_rule_test"]:  # type: ignore[index]
        for a in t["exp_alerts"]:
            a["exp_annotations"] = {
                "summary": "GPU 0 on n1 is at 90 °C (above 85 °C for 5m)" if t["eval_time"] == "6m"
                else "GPU 0 on n1 is at 83 °C (above 85 °C for 5m)",
                "remediation": "Check fans, airflow and inlet temperature of the node; move load off the GPU "
                               "if it keeps rising. The alert clears below 80 °C."}
    path = exported / "tests-hysteresis.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    r = _run(promtool, "test", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_exported_rules_name_only_catalogue_metrics(exported: Path) -> None:
    import re

    from gpufleet.exporter.catalogue import catalogue

    names = catalogue().names("both")
    for f in ("gpufleet-rules.yml", "gpufleet-rules-dcgm.yml"):
        doc = yaml.safe_load((exported / f).read_text())
        exprs = [r["expr"] for g in doc["groups"] for r in g["rules"]]
        used = {m for e in exprs for m in re.findall(r"\b(gpufleet_[a-z0-9_]+|DCGM_[A-Z0-9_]+)\b", e)}
        assert used and used <= names, used - names
        assert not any("increase(gpufleet_gpu_last_xid" in e or "increase(DCGM_FI_DEV_XID_ERRORS" in e
                       for e in exprs)
