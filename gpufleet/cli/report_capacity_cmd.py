"""CLI: `gpufleet report capacity`: the capacity-planning report (what to reserve, cost, risk, evidence)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gpufleet.exporter.errors import ConfigError, InputError

PLAN_MODELS = ("seasonal_naive_daily", "seasonal_mean", "ets", "theta", "ensemble")


def _load(csv: Path | None, time_col: str, value_col: str, series_col: str | None, store: Path | None,
          helios: Path | None, since: str | None) -> Any:
    import pandas as pd

    from gpufleet.analytics.forecast import demand_from_csv, demand_from_helios, demand_from_history

    given = [x for x in (csv, store, helios) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of --csv, --store, --helios")
    if csv is not None:
        if not csv.exists():
            raise InputError("no such file", path=str(csv))
        frame = demand_from_csv(csv, time_col, value_col, series_col, "1h", "mean")
    elif helios is not None:
        frame = demand_from_helios(helios, "1h", "mean")[["total"]]
    else:
        from gpufleet.analytics.history.store import StoreReader

        assert store is not None
        with StoreReader(store) as reader:
            end = pd.Timestamp.now(tz="UTC").floor("h")  # the CLI is the only place the wall clock is read
            frame = demand_from_history(reader, since or (end - pd.Timedelta("60D")), end, "1h")
    if since is not None:
        frame = frame[frame.index >= pd.Timestamp(since).tz_localize(None)]
    if frame.empty:
        raise InputError("no demand in the selected window")
    return frame


def capacity(
    out: Path = typer.Option(..., "--out", help="Folder for index.html, report.md and the CSV tables."),
    csv: Path | None = typer.Option(None, "--csv", help="Demand CSV (long format)."),
    time_col: str = typer.Option("time", "--time-col"),
    value_col: str = typer.Option("gpus", "--value-col"),
    series_col: str | None = typer.Option(None, "--series-col", help="Column with the GPU type of each row."),
    store: Path | None = typer.Option(None, "--store", help="History store folder (allocated + queued GPUs)."),
    helios: Path | None = typer.Option(None, "--helios", help="Plan the Helios total (helios-earth-vc folder)."),
    since: str | None = typer.Option(None, "--since", help="Use history from this time on (e.g. 2020-05-01)."),
    prices: Path | None = typer.Option(None, "--prices", help="Price book YAML overriding the defaults."),
    gpu_type: str = typer.Option("A100", "--gpu-type", help="Price-book type for series that name none."),
    horizon: str = typer.Option("7d", "--horizon", help="Window the plan is costed over."),
    holdout: str | None = typer.Option(None, "--holdout", help="Hold out the last N days (e.g. 7d): plan on the "
                                       "rest and charge the plans with the real hold-out demand."),
    spot_share: float = typer.Option(0.0, "--spot-share", help="Share of work above the reservation that may "
                                     "run on spot (interruptible, checkpointing jobs)."),
    on_demand_cap: float | None = typer.Option(None, "--on-demand-cap", help="GPUs available on demand at most."),
    max_shortfall: float | None = typer.Option(None, "--max-shortfall-prob", help="Service level: max share of "
                                               "hours short of capacity."),
    max_unmet: float | None = typer.Option(None, "--max-unmet-gpu-hours", help="Service level: max expected "
                                           "unmet GPU-hours over the window."),
    scenarios: int = typer.Option(300, "--scenarios"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write the capacity-planning report: how many GPUs to reserve per type and term, the on-demand / spot
    split, expected cost with a 90 % interval, shortfall risk and savings vs all on-demand and vs the
    backward-looking 30-day rule; then forecast fans, cost distribution, scenarios and backtest quality.

    Example: gpufleet report capacity --helios ../shared/data/helios-earth-vc --gpu-type V100 --holdout 7d --out capacity-report
    """
    import pandas as pd
    from rich.progress import Progress

    from gpufleet.allocator.planner import pricebook, report
    from gpufleet.allocator.planner.evaluate import forecast_paths
    from gpufleet.allocator.planner.evaluate import holdout as run_holdout
    from gpufleet.allocator.planner.optimize import PlanSettings, plan_type
    from gpufleet.analytics.backtest import evaluate
    from gpufleet.models.forecast_base import steps_per

    book = pricebook.load(prices)
    settings = PlanSettings(spot_share=spot_share, on_demand_cap=on_demand_cap, max_shortfall_prob=max_shortfall,
                            max_unmet_gpu_hours=max_unmet)
    try:
        hours = steps_per(horizon, "1h")
        hold = steps_per(holdout, "1h") if holdout else 0
    except ValueError as exc:
        raise ConfigError(f"bad duration: {exc}") from None
    frame = _load(csv, time_col, value_col, series_col, store, helios, since)
    cols = [c for c in frame.columns if c != "total"] or ["total"]
    evs: list[report.TypeEvidence] = []
    with Progress(transient=True) as bar:
        task = bar.add_task("planning", total=len(cols))
        for col in cols:
            typ = col if col in book.gpus else gpu_type
            price = book[typ]
            series = frame[col]
            hist = series.iloc[:-hold] if hold else series
            if hist.notna().sum() < 3 * 24:
                raise InputError(f"series {col}: need at least 3 days of hourly demand")
            try:
                bt, _ = evaluate(hist.to_frame(col), "1h", 24, 24, PLAN_MODELS, n_test=3, n_val=3)
                model = bt["default"]
                quality = bt["models"]
            except ValueError:
                model, quality = "seasonal_mean", {}
            paths, _fc = forecast_paths(hist, model, hold or hours, scenarios, seed)
            plan = plan_type(price, paths, settings, hist.to_numpy(dtype=float))
            rows: list[dict[str, Any]] = []
            if hold:
                rows = run_holdout(hist, series.iloc[-hold:].to_numpy(dtype=float), price, model, settings,
                                   n=scenarios, seed=seed).rows
            start = hist.index[-1] + pd.Timedelta("1h")
            evs.append(report.TypeEvidence(plan, hist, paths, start, model, quality, rows))
            bar.advance(task)
    notes = ["Reserved terms are costed at their effective hourly rate over the planned window; the plan "
             "assumes the window is representative of the term.",
             "Outages (hours where the whole fleet reads 0) are missing data, not zero demand."]
    paths_out = report.write(out, evs, book, settings, "GPU capacity plan", notes)
    typer.echo(f"wrote {paths_out['html']} and {paths_out['markdown']}")
    for ev in evs:
        p = ev.plan
        typer.echo(f"{p.gpu_type}: reserve {p.reserved} ({p.option}), expected cost {p.expected_cost:,.0f} "
                   f"{book.currency} [{p.cost_interval90[0]:,.0f}, {p.cost_interval90[1]:,.0f}]")


def register(report_app: typer.Typer) -> None:
    """Add this module's commands to the report group."""
    report_app.command("capacity")(capacity)
