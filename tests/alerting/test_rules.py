"""Rule files: validation errors name the rule, the line and what is wrong; the pack uses only
catalogue metrics, never increase() of a gauge."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpufleet.alerting.rules import PACK_DIR, load_rules, parse_duration, parse_rules
from gpufleet.exporter.catalogue import catalogue
from gpufleet.exporter.errors import InputError

GOOD = """\
rules:
  - name: GpuPowerHigh
    metric: gpufleet_gpu_power_usage_watts
    op: ">"
    threshold: 650
    for: 10m
    severity: warning
    annotations:
      summary: "GPU {{ $labels.gpu }} draws {{ $value }} W"
      remediation: "Check the power limit."
"""


def _error(text: str) -> InputError:
    with pytest.raises(InputError) as exc:
        parse_rules(text, "custom.yaml")
    return exc.value


@pytest.mark.parametrize(("change", "line", "needle"), [
    (("threshold: 650", "threshold: lots"), 5, "threshold must be a number"),
    (("metric: gpufleet_gpu_power_usage_watts", "metric: gpufleet_gpu_powr_watts"), 3, "not a native metric name"),
    (("for: 10m", "for: ten minutes"), 6, "for: not a duration"),
    (("severity: warning", "severity: urgent"), 7, "severity must be one of"),
    (('op: ">"', 'op: "=>"'), 4, "op must be one of"),
    (('      remediation: "Check the power limit."\n', ""), 8, "remediation is required"),
    (("    for: 10m\n", "    for: 10m\n    clear: 700\n"), 7, "clear 700 must not be above threshold 650"),
])
def test_error_names_rule_line_and_problem(change: tuple[str, str], line: int, needle: str) -> None:
    err = _error(GOOD.replace(*change))
    assert err.path == "custom.yaml" and err.line == line, str(err)
    assert "rule 'GpuPowerHigh'" in str(err) and needle in str(err)
    assert str(err).startswith(f"custom.yaml:{line}")


def test_increase_of_a_gauge_is_rejected() -> None:
    text = GOOD.replace("metric: gpufleet_gpu_power_usage_watts", "metric: gpufleet_gpu_last_xid").replace(
        "    op:", "    kind: increase\n    window: 5m\n    op:")
    err = _error(text)
    assert "increase needs a counter" in str(err) and "last-value gauge" in str(err)


def test_unknown_key_and_bad_yaml() -> None:
    assert "unknown key 'treshold'" in str(_error(GOOD.replace("threshold: 650", "threshold: 650\n    treshold: 1")))
    err = _error("rules:\n  - name: [unclosed\n")
    assert err.line is not None and "not valid YAML" in str(err)


def test_match_label_must_belong_to_the_metric() -> None:
    err = _error(GOOD.replace("    op:", "    match: {xid: '79'}\n    op:"))
    assert "match label 'xid' is not a label of gpufleet_gpu_power_usage_watts" in str(err)


def test_good_file_overrides_and_extra_rules(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(GOOD)
    rs = load_rules([path], overrides={"GpuTemperatureHigh": {"threshold": 90, "for": "10m"}})
    temp = rs.by_name("GpuTemperatureHigh")[0]
    assert (temp.threshold, temp.for_s) == (90, 600)
    assert "(above 90 °C for 10m)" in temp.annotation("summary")
    assert rs.by_name("GpuPowerHigh")[0].for_s == 600
    assert parse_duration("1h30m") == 5400


def test_pack_metrics_are_all_in_the_catalogue() -> None:
    cat = catalogue()
    rules = load_rules()
    for r in rules.rules:
        assert cat.by_name(r.metric.name) is r.metric or cat.by_name(r.metric.name) == r.metric
        if r.kind in ("increase", "rate"):
            assert r.metric.is_counter, r.name
    # every gpufleet_ / DCGM_ metric named anywhere in the pack's text is a catalogue name
    import re
    for f in PACK_DIR.glob("*.yaml"):
        for name in re.findall(r"\b(gpufleet_[a-z0-9_]+|DCGM_[A-Z0-9_]+)\b", f.read_text()):
            assert cat.by_name(name) is not None, f"{f.name}: {name} is not in the catalogue"


def test_pack_covers_the_required_alerts() -> None:
    rules = load_rules()
    names = set(rules.names())
    for required in ("GpuTemperatureHigh", "GpuThermalThrottling", "GpuPowerThrottling", "GpuPowerBrake",
                     "GpuEccUncorrectable", "GpuRowRemapPending", "GpuRowRemapFailure", "GpuRetiredPagesPending",
                     "GpuXidHardwareCritical", "GpuXidApplication", "GpuLost", "NodeGpuCountBelowInventory",
                     "GpufleetExporterDown", "GpufleetExporterStale", "GpuAllocatedIdle", "GpuFailureRiskHigh",
                     "DemandExceedsCapacity", "QueueBacklog"):
        assert required in names
    critical = {v for r in rules.by_name("GpuXidHardwareCritical") for _, vals in r.match for v in vals}
    assert {"48", "62", "63", "64", "74", "79", "92", "94", "95", "119", "120"} <= critical
    assert all(r.severity == "critical" for r in rules.by_name("GpuXidHardwareCritical"))
    app = rules.by_name("GpuXidApplication")[0]
    assert app.severity != "critical" and set(dict(app.match)["xid"]) == {"13", "31", "43", "45"}
    assert all(r.metric.name == "gpufleet_gpu_xid_errors_total" for r in rules.rules if "Xid" in r.name)
    temp = rules.by_name("GpuTemperatureHigh")[0]
    assert (temp.threshold, temp.for_s, temp.op) == (85, 300, ">")
