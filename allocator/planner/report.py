"""The capacity-planning report: one self-contained HTML page (PNG plots embedded), a Markdown copy, CSV tables.

Order: the recommendation first (what to reserve, expected cost and its 90 % interval, shortfall risk, savings),
then the evidence: forecast fans, the cost distribution over scenarios, the scenario table, backtest quality.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gpufleet.allocator.planner.optimize import PlanSettings, TypePlan, charge
from gpufleet.allocator.planner.pricebook import PriceBook


@dataclass
class TypeEvidence:
    """Everything the report shows for one GPU type."""

    plan: TypePlan
    history: pd.Series                 # hourly demand used to plan
    paths: np.ndarray                  # (S, T) scenarios
    forecast_start: pd.Timestamp
    model: str
    backtest: dict[str, dict[str, float]] = field(default_factory=dict)   # model -> metrics
    holdout: list[dict[str, Any]] = field(default_factory=list)
    installed: int | None = None       # GPUs of this type in the fleet today (drawn on the plots)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def fan_plot(ev: TypeEvidence) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3), dpi=90)
    h = ev.history.iloc[-14 * 24:]
    ax.plot(h.index, h.to_numpy(), color="black", lw=0.8, label="demand (history)")
    t = pd.date_range(ev.forecast_start, periods=ev.paths.shape[1], freq="1h")
    for lo, hi, a in ((5, 95, 0.2), (25, 75, 0.35)):
        ax.fill_between(t, np.percentile(ev.paths, lo, axis=0), np.percentile(ev.paths, hi, axis=0),
                        color="tab:blue", alpha=a, lw=0, label=f"{lo}-{hi} %")
    ax.plot(t, np.median(ev.paths, axis=0), color="tab:blue", lw=1, label="median")
    ax.axhline(ev.plan.reserved, color="tab:green", ls="--", lw=1, label=f"reserve {ev.plan.reserved}")
    if ev.plan.backward_reserved is not None:
        ax.axhline(ev.plan.backward_reserved, color="tab:red", ls=":", lw=1,
                   label=f"30-day rule {ev.plan.backward_reserved}")
    if ev.installed is not None:
        ax.axhline(ev.installed, color="tab:purple", ls="-.", lw=1.2, label=f"installed {ev.installed}")
    ax.set_ylabel("GPUs")
    ax.set_title(f"{ev.plan.gpu_type}: demand forecast ({ev.model})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


def cost_plot(ev: TypeEvidence, book: PriceBook, settings: PlanSettings) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    price = book[ev.plan.gpu_type]
    fig, ax = plt.subplots(figsize=(9, 2.6), dpi=90)
    series = {"our plan": ev.plan.cost_samples,
              "all on-demand": charge(price, 0, ev.paths, settings, ev.plan.option).cost}
    if ev.plan.backward_reserved is not None:
        series["30-day rule"] = charge(price, ev.plan.backward_reserved, ev.paths, settings, ev.plan.option).cost
    for (label, c), col in zip(series.items(), ("tab:green", "tab:gray", "tab:red"), strict=False):
        ax.hist(c, bins=30, alpha=0.5, color=col, label=label)
    ax.set_xlabel(f"cost over the window ({book.currency})")
    ax.set_ylabel("scenarios")
    ax.set_title(f"{ev.plan.gpu_type}: cost distribution over {ev.paths.shape[0]} scenarios", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def recommendation_rows(evs: list[TypeEvidence], book: PriceBook) -> pd.DataFrame:
    rows = []
    for ev in evs:
        p = ev.plan
        rows.append({"gpu_type": p.gpu_type, "reserve_gpus": p.reserved, "term_option": p.option,
                     "window_hours": p.hours, "expected_cost": round(p.expected_cost, 2),
                     "cost_p5": round(p.cost_interval90[0], 2), "cost_p95": round(p.cost_interval90[1], 2),
                     "expected_on_demand_gpu_hours": round(p.expected_on_demand_hours, 1),
                     "expected_spot_gpu_hours": round(p.expected_spot_hours, 1),
                     "shortfall_prob": round(p.shortfall_prob, 4), "expected_unmet_gpu_hours": round(p.expected_unmet_hours, 1),
                     "break_even_utilization": round(p.break_even_utilization, 3),
                     "savings_vs_all_on_demand": round(p.savings_vs_on_demand, 2),
                     "installed_gpus": ev.installed,
                     "backward_rule_reserve": p.backward_reserved,
                     "savings_vs_backward_rule": None if p.savings_vs_backward is None else round(p.savings_vs_backward, 2),
                     "currency": book.currency})
    return pd.DataFrame(rows)


def scenario_rows(ev: TypeEvidence) -> pd.DataFrame:
    tot = ev.paths.sum(axis=1)
    peak = ev.paths.max(axis=1)
    qs = (5, 25, 50, 75, 95)
    return pd.DataFrame({"percentile": qs, "gpu_hours": [round(float(np.percentile(tot, q)), 1) for q in qs],
                         "peak_gpus": [round(float(np.percentile(peak, q)), 1) for q in qs],
                         "cost_our_plan": [round(float(np.percentile(ev.plan.cost_samples, q)), 2) for q in qs]})


def _md(df: pd.DataFrame) -> str:
    rows = ["| " + " | ".join(map(str, df.columns)) + " |", "|---" * len(df.columns) + "|"]
    rows += ["| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, classes="t", na_rep="")


def _img(b: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(b).decode()}">'


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1000px;color:#222}
.rec{border:2px solid #2a7;border-radius:8px;padding:0.6em 1em;background:#f4fbf6}
table.t{border-collapse:collapse;display:block;overflow-x:auto;font-size:0.85em;margin:0.5em 0}table.t td,table.t th{border-bottom:1px solid #ddd;
padding:2px 8px;text-align:right}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.4em}img{max-width:100%}
.small{font-size:0.8em;color:#555}"""


def write(out: Path, evs: list[TypeEvidence], book: PriceBook, settings: PlanSettings, title: str,
          notes: list[str] | None = None) -> dict[str, Path]:
    """index.html + report.md + recommendation.csv + scenarios_<type>.csv + backtest_<type>.csv (+ PNGs)."""
    out.mkdir(parents=True, exist_ok=True)
    rec = recommendation_rows(evs, book)
    rec.to_csv(out / "recommendation.csv", index=False)
    h: list[str] = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>", "<div class='rec'>"]
    md: list[str] = [f"# {title}", "", "## Recommendation", ""]
    for ev in evs:
        p = ev.plan
        line = (f"Reserve <b>{p.reserved} {html.escape(p.gpu_type)}</b> GPUs ({p.option.replace('_', ' ')}). "
                f"Expected cost over the next {p.hours} h: <b>{p.expected_cost:,.0f} {book.currency}</b> "
                f"(90 % interval {p.cost_interval90[0]:,.0f}&ndash;{p.cost_interval90[1]:,.0f}); "
                f"shortfall probability {p.shortfall_prob:.1%}; reserved capacity pays off above "
                f"{p.break_even_utilization:.0%} utilisation; saves {p.savings_vs_on_demand:,.0f} vs all on-demand")
        if p.savings_vs_backward is not None:
            line += (f" and {p.savings_vs_backward:,.0f} vs the 30-day backward rule "
                     f"(which would reserve {p.backward_reserved})")
        h.append(f"<p>{line}.</p>")
        md.append(html.unescape(line.replace("<b>", "**").replace("</b>", "**")) + ".")
        md.append("")
    h.append(_table_html(rec.drop(columns=["currency"]).set_index("gpu_type").T.reset_index(names="")))
    h.append(f"<p class='small'>Prices: {html.escape(book.source)}. Settings: spot share {settings.spot_share:.0%}, "
             f"on-demand cap {settings.on_demand_cap or 'none'}.</p></div>")
    md.append(_md(rec))
    md += ["", "## Evidence", ""]
    h.append("<h2>Evidence</h2>")
    for ev in evs:
        t = ev.plan.gpu_type
        safe = "".join(c if c.isalnum() else "_" for c in t)
        fan, cost = fan_plot(ev), cost_plot(ev, book, settings)
        (out / f"fan_{safe}.png").write_bytes(fan)
        (out / f"cost_{safe}.png").write_bytes(cost)
        sc = scenario_rows(ev)
        sc.to_csv(out / f"scenarios_{safe}.csv", index=False)
        h += [f"<h2>{html.escape(t)}: forecast fan</h2>", _img(fan, f"forecast fan {t}"),
              f"<h2>{html.escape(t)}: cost distribution</h2>", _img(cost, f"cost distribution {t}"),
              f"<h2>{html.escape(t)}: scenarios</h2>", _table_html(sc)]
        md += [f"### {t}", "", f"![forecast fan](fan_{safe}.png)", "", f"![cost distribution](cost_{safe}.png)", "",
               "Scenarios (percentiles over sample paths):", "", _md(sc), ""]
        if ev.backtest:
            bt = pd.DataFrame([{"model": m, **{k: round(v, 3) for k, v in d.items()}} for m, d in ev.backtest.items()])
            # coverage of the calibrated intervals beside every accuracy figure
            first = [c for c in ("model", "mae", "mase", "relmae", "coverage80", "coverage95") if c in bt.columns]
            bt = bt[first + [c for c in bt.columns if c not in first]]
            own = ev.backtest.get(ev.model, {})
            if "coverage80" in own:
                md += [f"Forecast model {ev.model}: backtest MASE {own.get('mase', float('nan')):.3f}, 80 % interval "
                       f"coverage {own['coverage80']:.3f}, 95 % coverage {own.get('coverage95', float('nan')):.3f}.", ""]
                h.append(f"<p>Forecast model {html.escape(ev.model)}: backtest MASE {own.get('mase', float('nan')):.3f}, "
                         f"80 % interval coverage {own['coverage80']:.3f}, 95 % coverage "
                         f"{own.get('coverage95', float('nan')):.3f}.</p>")
            bt.to_csv(out / f"backtest_{safe}.csv", index=False)
            h += [f"<h2>{html.escape(t)}: backtest quality (day-ahead, rolling origin)</h2>", _table_html(bt)]
            md += ["Backtest quality (day-ahead, rolling origin):", "", _md(bt), ""]
        if ev.holdout:
            ho = pd.DataFrame(ev.holdout)
            ho.to_csv(out / f"holdout_{safe}.csv", index=False)
            h += [f"<h2>{html.escape(t)}: plans charged with real hold-out demand</h2>", _table_html(ho.round(2))]
            md += ["Plans charged with real hold-out demand:", "", _md(ho.round(2)), ""]
    for n in notes or []:
        h.append(f"<p class='small'>{html.escape(n)}</p>")
        md += [f"_{n}_", ""]
    # lets a headless browser (and the test) see that every embedded image decoded
    h.append("<script>window.addEventListener('load',function(){var n=0;for(var i of document.images)"
             "{if(i.complete&&i.naturalWidth>0)n++;}document.body.setAttribute('data-images-loaded',n);"
             "document.body.setAttribute('data-images',document.images.length);});</script>")
    h.append("</body></html>")
    (out / "index.html").write_text("\n".join(h))
    (out / "report.md").write_text("\n".join(md))
    return {"html": out / "index.html", "markdown": out / "report.md", "csv": out / "recommendation.csv"}
