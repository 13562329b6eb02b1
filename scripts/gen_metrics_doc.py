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

from gpufleet.exporter.catalogue import (  # noqa: E402
    DCGM_IDENTITY_LABELS,
    MIG_DCGM_LABELS,
    MIG_NATIVE_LABELS,
    NATIVE_IDENTITY_LABELS,
    Catalogue,
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


VENDOR_NAMES = {"nvidia": "NVIDIA (NVML)", "amd": "AMD (amdsmi)"}


def _vendors(m: Metric) -> str:
    """Which GPU vendors provide a metric; vendor-independent rows (self, analytics...) say "any"."""
    return ", ".join(m.vendors) if m.vendors else "any"


def _vendor_summary(cat: Catalogue) -> list[str]:
    device = [m for m in cat if m.vendors]
    both = [m for m in device if len(m.vendors) > 1]
    parts = [f"{sum(1 for m in device if v in m.vendors)} from {name}" for v, name in VENDOR_NAMES.items()]
    only = [f"{sum(1 for m in device if m.vendors == (v,))} {v} only" for v in VENDOR_NAMES]
    return [
        f"Vendors (the `vendors` column; every device series also carries a `vendor` label): {', '.join(parts)};",
        f"{len(both)} from both, {', '.join(only)}. A field a vendor lacks is absent on its GPUs. Rows marked",
        "`any` do not come from a GPU library (exporter self-metrics, analytics, allocator, alerting).",
        "See `docs/amd-and-virtualization.md` for how AMD fields map onto these names.",
    ]


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
        *_vendor_summary(cat),
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
                _vendors(m), _cell(m.help),
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
