"""Markdown + PNG report of a failure evaluation (PR curves, calibration, lead times).

Every report states where its numbers come from: the twin (whose precursors we designed, so they
flatter any model) or real records (Titan, InfiniteHBD).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PROVENANCE = {
    "twin": "**Source: the digital twin.** Its failure precursors were designed by us, so these figures "
            "flatter every model; they show the pipeline works, not how it does on a real fleet. "
            "`precursor_oracle` is the ceiling: an observer who reads every precursor the twin draws perfectly "
            "(failures without one get 0).",
    "titan": "**Source: real records** — ORNL Titan GPU lifetimes (SC '20), time split; no telemetry, "
             "static covariates only.",
    "infinitehbd": "**Source: real records** — StepFun InfiniteHBD node fault trace (SIGCOMM '25), time split; "
                   "no telemetry, fault history only.",
}
COLUMNS = ("positives", "pr_auc", "roc_auc", "recall_at_precision_0.5", "recall_at_1_false_alarm_per_1000_gpu_days",
           "brier", "c_index")


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _blocks(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for name, per in result["models"].items():
        for h, b in per.items():
            if isinstance(b, dict):
                out.append((name, h, b))
    return out


def write_report(result: dict[str, Any], out: Path) -> Path:
    """Write ``report.md`` and PNG figures into ``out``; returns the Markdown path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    out.mkdir(parents=True, exist_ok=True)
    ds = result["dataset"]
    blocks = _blocks(result)
    horizons = sorted({h for _, h, _ in blocks}, key=lambda h: [x for _, x, _ in blocks].index(h))
    lines = [f"# Failure prediction: {ds}", "", PROVENANCE.get(ds, ""), ""]
    meta = result.get("meta", {})
    if meta:
        lines += ["Setup: " + ", ".join(f"{k} = {v}" for k, v in meta.items() if not isinstance(v, (dict, list))), ""]
    lines += ["| model | horizon | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    for name, h, b in blocks:
        lines.append(f"| {name} | {h} | " + " | ".join(_fmt(b.get(c)) for c in COLUMNS) + " |")
    alarms = [(n, h, b["alarms"]) for n, h, b in blocks if "alarms" in b]
    if alarms:
        lines += ["", "Alarms at the threshold that allows 1 false alarm per 1,000 GPU-days "
                  "(work saved = GPU-hours of the jobs running on a caught GPU since they started; "
                  "false-alarm cost = 1 drained GPU-hour per false alarm):", "",
                  "| model | horizon | failures | caught | median lead (h) | GPU-h saved | false-alarm GPU-h |",
                  "|---|---|---|---|---|---|---|"]
        for n, h, a in alarms:
            lines.append(f"| {n} | {h} | {a['failures']} | {a['caught']} | {_fmt(a['lead_time_median_h'])} | "
                         f"{a['gpu_hours_saved']:.1f} | {a['false_alarm_gpu_hours']:.1f} |")
    # PR curves
    fig, axes = plt.subplots(1, len(horizons), figsize=(5 * len(horizons), 4), squeeze=False)
    for ax, h in zip(axes[0], horizons, strict=True):
        for name, hh, b in blocks:
            if hh != h or "_scores" not in b:
                continue
            y, p = b["_scores"]
            if np.sum(y) == 0:
                continue
            prec, rec, _ = precision_recall_curve(y, p)
            ax.plot(rec, prec, label=f"{name} ({_fmt(b.get('pr_auc'))})")
        ax.set_title(f"{ds}: precision-recall, {h}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pr_curves.png", dpi=90)
    plt.close(fig)
    # calibration
    fig, axes = plt.subplots(1, len(horizons), figsize=(5 * len(horizons), 4), squeeze=False)
    for ax, h in zip(axes[0], horizons, strict=True):
        for name, hh, b in blocks:
            if hh != h or not b.get("calibration"):
                continue
            cal = b["calibration"]
            ax.plot([c["predicted"] for c in cal], [c["observed"] for c in cal], marker="o", label=name)
        lim = ax.get_xlim()[1], ax.get_ylim()[1]
        top = max(lim)
        ax.plot([0, top], [0, top], color="grey", linestyle=":")
        ax.set_title(f"{ds}: calibration, {h}")
        ax.set_xlabel("predicted probability (bin mean)")
        ax.set_ylabel("observed frequency")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=90)
    plt.close(fig)
    figs = ["pr_curves.png", "calibration.png"]
    leads = [(n, h, np.asarray(a["lead_times_s"]) / 3600.0) for n, h, a in alarms if a["lead_times_s"]]
    if leads:
        fig, ax = plt.subplots(figsize=(6, 4))
        for n, h, v in leads:
            ax.hist(v, bins=20, alpha=0.5, label=f"{n} {h}")
        ax.set_xlabel("lead time of true alarms (hours)")
        ax.set_ylabel("failures")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "lead_times.png", dpi=90)
        plt.close(fig)
        figs.append("lead_times.png")
    lines += [""] + [f"![{f}]({f})" for f in figs] + [""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    return md
