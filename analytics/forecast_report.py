"""Markdown + PNG report of a forecast backtest: metric tables and forecast fans against actuals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.analytics.backtest import OriginResult


def fan_png(path: Path, history: pd.Series, results: list[OriginResult], title: str, freq: str) -> Path:
    """Fan chart: actuals as a line, the 50/80/95 % bands and the median of each origin's forecast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=90)
    if results:
        t0 = min(r.origin for r in results) - pd.Timedelta(freq) * (len(results[0].actual) * 2)
        h = history[history.index >= t0]
        ax.plot(h.index, h.to_numpy(), color="black", lw=0.8, label="actual")
    for i, r in enumerate(sorted(results, key=lambda r: r.origin)):
        t = pd.date_range(r.origin, periods=len(r.actual), freq=freq)
        for lo, hi, a in ((0.025, 0.975, 0.15), (0.1, 0.9, 0.25), (0.25, 0.75, 0.35)):
            ax.fill_between(t, r.quantiles[lo], r.quantiles[hi], color="tab:blue", alpha=a, lw=0,
                            label=f"{round((hi - lo) * 100)} %" if i == 0 else None)
        ax.plot(t, r.median, color="tab:blue", lw=1, label="median" if i == 0 else None)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("GPUs")
    ax.legend(loc="upper left", fontsize=7, ncol=5)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else str(v)


def metrics_table(models: dict[str, dict[str, float]], default: str | None = None) -> str:
    keys = ["mae", "mase", "relmae", "smape", "pinball", "coverage80", "coverage95"]
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for m in sorted(models, key=lambda m: models[m].get("mase", np.inf)):
        mark = " (default)" if m == default else ""
        lines.append(f"| {m}{mark} | " + " | ".join(_fmt(models[m].get(k)) for k in keys) + " |")
    return "\n".join(lines)


STRICT_KEYS = ("mae", "naive_mae", "ratio", "mase", "relmae", "coverage80", "coverage95")


def strict_table(summary: dict[str, Any]) -> str:
    """Markdown table of a strict-lead backtest: per model, the median over series and, when present, the
    ``total`` series; MAE beside naive_last's, MASE and relMAE (vs seasonal naive) beside 80/95 % coverage."""
    default = summary.get("default")
    models = summary["models"]
    total = summary["series"].get("total", {})
    head = ["model", "series", *STRICT_KEYS]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for m in sorted(models, key=lambda m: models[m].get("ratio", np.inf)):
        mark = " (default)" if m == default else ""
        rows = [("median", models[m])] + ([("total", total[m])] if m in total else [])
        for label, v in rows:
            lines.append(f"| {m}{mark} | {label} | " + " | ".join(_fmt(v.get(k)) for k in STRICT_KEYS) + " |")
    return "\n".join(lines)


def write_report(out: Path, summary: dict[str, Any], results: list[OriginResult], frame: pd.DataFrame,
                 max_fans: int = 6) -> Path:
    """report.md + fan_<series>.png + metrics.csv under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    default = summary["default"]
    rows = [{"series": s, "model": m, **v} for s, mm in summary["series"].items() for m, v in mm.items()]
    pd.DataFrame(rows).to_csv(out / "metrics.csv", index=False)
    md = [f"# Forecast backtest ({summary['freq']} steps, horizon {summary['horizon_steps']} steps)", "",
          f"Default forecaster (lowest median MASE on the validation origins): **{default}**.", "",
          "Test origins (the last ones), aggregated as the median over series; MASE scaled by the in-sample "
          "daily seasonal naive, relmae = MAE / seasonal naive MAE on the same steps, pinball = weighted "
          "quantile loss, intervals conformally calibrated from earlier origins.", "",
          metrics_table(summary["models"], default), "", "## Validation origins", "",
          metrics_table(summary["validation"], default), "", "## Forecast fans (default model, test origins)", ""]
    series = list(summary["series"])
    if "total" in series:
        series = ["total"] + [s for s in series if s != "total"]
    for s in series[:max_fans]:
        rs = [r for r in results if r.series == s and r.model == default and r.role == "test"]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in s)
        fan_png(out / f"fan_{safe}.png", frame[s], rs, f"{s}: {default}", summary["freq"])
        md += [f"![{s}](fan_{safe}.png)", ""]
    md += ["## Per series (test)", ""]
    for s in series:
        md += [f"### {s}", "", metrics_table(summary["series"][s], default), ""]
    (out / "report.md").write_text("\n".join(md))
    return out / "report.md"
