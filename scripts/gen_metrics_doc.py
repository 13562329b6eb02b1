#!/usr/bin/env python
"""Generate docs/metrics.md from the metric catalogue (exporter/catalogue.csv).

Usage: python scripts/gen_metrics_doc.py            # rewrite docs/metrics.md
       python scripts/gen_metrics_doc.py --check    # exit 1 if docs/metrics.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.catalogue import (  # noqa: E402
    DCGM_IDENTITY_LABELS,
    MIG_DCGM_LABELS,
    MIG_NATIVE_LABELS,
    NATIVE_IDENTITY_LABELS,
    Metric,
    load_catalogue,
)

DOC = ROOT / "docs" / "metrics.md"
FAMILY_TITLES = {"self": "exporter self-metrics"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _dcgm(m: Metric) -> str:
    if not m.dcgm_name:
        return ""
    out = f"`{m.dcgm_name}`"
    if m.dcgm_scale != 1:
        out += f" (x {m.dcgm_scale:g})"
    if m.dcgm_sum_labels:
        out += f" (sum over {', '.join(m.dcgm_sum_labels)})"
    return out


def render() -> str:
    cat = load_catalogue()
    lines = [
        "# Metrics",
        "",
        "Generated from `exporter/catalogue.csv` by `python scripts/gen_metrics_doc.py`; do not edit by hand",
        "(`tests/exporter/test_metrics_doc.py` fails when this page is out of date).",
        "",
        f"{len(cat)} metrics. Units are base units (bytes, seconds, watts, joules, celsius, hertz, ratios 0-1);",
        "a field a device does not support is absent, never 0. `gpufleet exporter --names dcgm` renders the",
        "metrics that have a dcgm-exporter name under that name, in dcgm's unit (the native value times the",
        "factor shown) with dcgm's labels; `--names both` renders both.",
        "",
        f"Device-scope series carry `{' '.join(NATIVE_IDENTITY_LABELS)}` (MIG instances also "
        f"`{' '.join(MIG_NATIVE_LABELS)}`);",
        f"in dcgm naming `{' '.join(DCGM_IDENTITY_LABELS)}` (MIG: `{' '.join(MIG_DCGM_LABELS)}`).",
        "Extra labels are listed per metric.",
        "",
    ]
    families: list[str] = []
    for m in cat:
        if m.family not in families:
            families.append(m.family)
    for fam in families:
        lines += [f"## {FAMILY_TITLES.get(fam, fam)}", "",
                  "| metric | type | unit | labels | dcgm-exporter name | source | vendors | help |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in cat.family(fam):
            lines.append("| " + " | ".join([
                f"`{m.name}`", m.type, m.unit or "", " ".join(m.labels), _dcgm(m), _cell(m.nvml_source),
                " ".join(m.vendors), _cell(m.help),
            ]) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run python scripts/gen_metrics_doc.py")
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
