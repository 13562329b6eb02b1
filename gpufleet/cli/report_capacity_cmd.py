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


def _pairs(text: str | None, what: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        try:
            out[k.strip()] = int(v)
        except ValueError:
            raise ConfigError(f"{what}: expected TYPE=N[,TYPE=N...], got {part!r}") from None
        if not sep or out[k.strip()] < 0:
            raise ConfigError(f"{what}: expected TYPE=N with N >= 0, got {part!r}")
    return out


def capacity(
    out: Path = typer.Option(..., "--out", help="Folder for index.html, report.md and the CSV tables."),
    csv: Path | None = typer.Option(None, "--csv", help="Demand CSV (long format)."),
    time_col: str = typer.Option("time", "--time-col"),
    value_col: str = typer.Option("gpus", "--value-col"),
    series_col: str | None = typer.Option(None, "--series-col", help="Column naming the GPU type (or exact model) "
                                          "each row's demand may run on; 'A100|H100' = demand either may serve."),
    store: Path | None = typer.Option(None, "--store", help="History store folder (allocated + queued GPUs)."),
    helios: Path | None = typer.Option(None, "--helios", help="Plan the Helios total (helios-earth-vc folder)."),
    since: str | None = typer.Option(None, "--since", help="Use history from this time on (e.g. 2020-05-01)."),
    prices: Path | None = typer.Option(None, "--prices", help="Price book YAML overriding the defaults."),
    gpu_type: str = typer.Option("A100", "--gpu-type", help="Price-book type (or exact model) for series that "
                                 "name none."),
    horizon: str = typer.Option("7d", "--horizon", help="Window the plan is costed over."),
    holdout: str | None = typer.Option(None, "--holdout", help="Hold out the last N days (e.g. 7d): plan on the "
                                       "rest and charge the plans with the real hold-out demand."),
    spot_share: float = typer.Option(0.0, "--spot-share", help="Share of work above the reservation that may "
                                     "run on spot (interruptible, checkpointing jobs)."),
    on_demand_cap: float | None = typer.Option(None, "--on-demand-cap", help="GPUs available on demand at most "
                                               "(per type)."),
    max_shortfall: float | None = typer.Option(None, "--max-shortfall-prob", help="Service level (one type "
                                               "only): max share of hours short of capacity."),
    max_unmet: float | None = typer.Option(None, "--max-unmet-gpu-hours", help="Service level: max expected "
                                           "unmet GPU-hours over the window, all types together."),
    budget: float | None = typer.Option(None, "--budget", help="Most the reservations of all types may cost "
                                        "over the window (price-book currency)."),
    terms: str | None = typer.Option(None, "--terms", help="Reserved terms to consider (1y, 3y; default: every "
                                     "term the history supports). A term the history cannot support is refused."),
    installed: str | None = typer.Option(None, "--installed", help="GPUs installed today per type, drawn on the "
                                         "plots (e.g. A100=16,H100=8,L40S=8)."),
    scenarios: int = typer.Option(300, "--scenarios"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write the capacity-planning report: how many GPUs to reserve per type and term (all types optimised
    together from the demand each may serve, under a shared budget or service level), the on-demand / spot
    split, expected cost with a 90 % interval, shortfall risk and savings vs all on-demand and vs the
    backward-looking 30-day rule; then forecast fans, cost distribution, scenarios and backtest quality.

    Example: gpufleet report capacity --helios ../shared/data/helios-earth-vc --gpu-type V100 --holdout 7d --out capacity-report
    """
    import math

    import numpy as np
    import pandas as pd
    from rich.progress import Progress

    from gpufleet.allocator.planner import pricebook, report
    from gpufleet.allocator.planner.evaluate import forecast_paths
    from gpufleet.allocator.planner.evaluate import holdout as run_holdout
    from gpufleet.allocator.planner.fleet import (
        DemandClass,
        InsufficientHistory,
        history_days,
        options_for_history,
        plan_fleet,
    )
    from gpufleet.allocator.planner.optimize import PlanSettings, plan_type
    from gpufleet.allocator.planner.pricebook import OPTIONS
    from gpufleet.analytics.backtest import evaluate
    from gpufleet.models.forecast_base import steps_per

    book = pricebook.load(prices)
    wanted: tuple[str, ...] = OPTIONS
    if terms is not None:
        chosen = {t.strip() for t in terms.split(",") if t.strip()}
        bad = chosen - {"1y", "3y"}
        if bad or not chosen:
            raise ConfigError(f"--terms: expected 1y and/or 3y, got {terms!r}")
        wanted = tuple(o for o in OPTIONS if o[:2] in chosen)
    try:
        hours = steps_per(horizon, "1h")
        hold = steps_per(holdout, "1h") if holdout else 0
    except ValueError as exc:
        raise ConfigError(f"bad duration: {exc}") from None
    inst = _pairs(installed, "--installed")
    frame = _load(csv, time_col, value_col, series_col, store, helios, since)
    cols = [c for c in frame.columns if c != "total"] or ["total"]
    typed = series_col is not None and cols != ["total"]  # else the series names no type: --gpu-type
    col_types = {c: tuple(sorted({book.type_of(part.strip()) for part in (c.split("|") if typed else [gpu_type])}))
                 for c in cols}
    for t in inst:
        book.type_of(t)  # an unknown type in --installed is an error naming it
    hist_frame = frame.iloc[:-hold] if hold else frame
    days = min(history_days(hist_frame[c].to_numpy(dtype=float)) for c in cols)
    allowed = options_for_history(days, wanted, explicit=terms is not None)
    settings = PlanSettings(spot_share=spot_share, on_demand_cap=on_demand_cap, max_shortfall_prob=max_shortfall,
                            max_unmet_gpu_hours=max_unmet, allowed_options=allowed)
    window = hold or hours
    classes: list[DemandClass] = []
    chosen_model: dict[str, str] = {}
    quality: dict[str, dict[str, dict[str, float]]] = {}
    with Progress(transient=True) as bar:
        task = bar.add_task("forecasting", total=len(cols))
        for col in cols:
            hist = hist_frame[col]
            try:
                bt, _ = evaluate(hist.to_frame(col), "1h", 24, 24, PLAN_MODELS, n_test=3, n_val=3)
            except ValueError as exc:
                raise InsufficientHistory(f"series {col}: cannot validate a forecaster on {days:.1f} days of "
                                          f"history ({exc})") from None
            model = bt["default"]
            mase = (bt.get("validation", {}).get(model) or bt["models"].get(model) or {}).get("mase")
            if mase is None or not math.isfinite(float(mase)):
                raise InsufficientHistory(f"series {col}: the forecaster chosen on validation ({model}) has MASE "
                                          f"{mase}: too little history to plan on")
            chosen_model[col], quality[col] = model, bt["models"]
            paths, _fc = forecast_paths(hist, model, window, scenarios, seed)
            classes.append(DemandClass(col, col_types[col], np.clip(paths, 0, None), hist.to_numpy(dtype=float)))
            bar.advance(task)
    evs: list[report.TypeEvidence] = []
    if len(classes) == 1 and len(classes[0].types) == 1 and budget is None:
        c = classes[0]
        by_type = {c.types[0]: plan_type(book[c.types[0]], c.scenarios, settings, c.history)}
        type_paths = {c.types[0]: c.scenarios}
    else:
        fp = plan_fleet(book, classes, settings, budget=budget, seed=seed)
        by_type, type_paths = fp.by_type, fp.type_paths
        if budget is not None:
            typer.echo(f"reserved spend {fp.reserved_spend:,.0f} of budget {budget:,.0f} {book.currency}"
                       f"{' (binding)' if fp.budget_binding else ''}")
    start = hist_frame.index[-1] + pd.Timedelta("1h")
    for t, plan in by_type.items():
        own = [c for c in classes if c.types == (t,)]
        single = own[0] if len(own) == 1 and len(classes) == len(by_type) else None
        hist_t = hist_frame[single.name] if single is not None else \
            hist_frame[[c.name for c in classes if t in c.types]].sum(axis=1, min_count=1)
        rows: list[dict[str, Any]] = []
        if hold and single is not None:
            rows = run_holdout(hist_t, frame[single.name].iloc[-hold:].to_numpy(dtype=float), book[t],
                               chosen_model[single.name], settings, n=scenarios, seed=seed).rows
        col = single.name if single is not None else next(c.name for c in classes if t in c.types)
        evs.append(report.TypeEvidence(plan, hist_t, type_paths[t], start, chosen_model[col], quality[col], rows,
                                       inst.get(t)))
    notes = ["Reserved terms are costed at their effective hourly rate over the planned window; the plan "
             "assumes the window is representative of the term.",
             f"History: {days:.1f} days; terms considered: {', '.join(sorted({o[:2] for o in allowed}))} "
             "(a 1-year term needs 14 days of history, a 3-year term 28).",
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
