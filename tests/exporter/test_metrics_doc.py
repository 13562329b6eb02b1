"""docs/metrics.md is generated from the catalogue and committed current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gpufleet.exporter.catalogue import catalogue

ROOT = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_metrics_doc", ROOT / "scripts" / "gen_metrics_doc.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_metrics_doc_is_current() -> None:
    text = _generator().render()
    committed = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == text, "docs/metrics.md is out of date: run python scripts/gen_metrics_doc.py"


def test_metrics_doc_lists_every_metric_with_its_dcgm_name() -> None:
    text = _generator().render()
    for m in catalogue():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{m.name}` |"))
        assert (m.dcgm_name or "") in row and m.type in row
