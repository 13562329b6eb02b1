"""docs/alerts.md lists every built-in rule (generated section is current)."""

from __future__ import annotations

from gpufleet.alerting.docgen import is_current
from gpufleet.alerting.rules import load_rules

from tests.servers import ROOT


def test_alerts_doc_is_current() -> None:
    rules = load_rules()
    doc = ROOT / "docs" / "alerts.md"
    assert is_current(doc, rules), "run: gpufleet alerting docs --path docs/alerts.md"
    text = doc.read_text()
    for name in rules.names():
        assert f"### {name}" in text
    for r in rules.rules:
        assert r.annotation("remediation") in text
