"""CLI: `gpufleet forecast ...`: backtest demand forecasters on a CSV or on the Helios trace; autoscaling replay."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from gpufleet.exporter.errors import ConfigError, InputError

forecast_app = typer.Typer(help="Demand forecasting: rolling-origin backtests, reports, autoscaling replay.",
                           no_args_is_help=True)



def _helios(folder: Path | None) -> Path:
    """--data, else where `gpufleet data fetch helios` puts it; missing: how to fetch it."""
    from gpufleet.datasets import default_path, require
    from gpufleet.settings import load_settings

    return require("helios", folder if folder is not None else default_path("helios", load_settings().data_dir))


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float):
        return round(o, 5) if math.isfinite(o) else None
    return o


def _run(frame: Any, freq: str, horizon: str, season: str, models: str, n_test: int, n_val: int, jobs: int,
         as_json: bool, out: Path | None) -> None:
    from rich.progress import Progress

    from gpufleet.analytics.backtest import evaluate
    from gpufleet.models.forecast_base import steps_per

    try:
        h = steps_per(horizon, freq)
        seasons = [steps_per(s.strip(), freq) for s in season.split(",") if s.strip()]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("backtest", total=frame.shape[1])
        try:
            summary, results = evaluate(frame, freq, h, seasons[0] if seasons else h, names, n_test, n_val,
                                        n_jobs=jobs, progress=lambda _s: bar.advance(task))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    summary["seasons_steps"] = seasons
    if out is not None:
        from gpufleet.analytics.forecast_report import write_report

        write_report(out, summary, results, frame)
        (out / "backtest.json").write_text(json.dumps(_clean(summary), indent=1))
    if as_json:
        typer.echo(json.dumps(_clean(summary)))
        return
    from gpufleet.analytics.forecast_report import metrics_table

    typer.echo(f"default: {summary['default']} (chosen on the validation origins)\n")
    typer.echo(metrics_table(summary["models"], summary["default"]))
    if out is not None:
        typer.echo(f"\nreport: {out / 'report.md'}")


DAY_AHEAD = ",".join(("naive_last", "seasonal_naive_daily", "seasonal_naive_weekly", "seasonal_mean", "ets",
                      "theta", "ensemble", "combo"))
MODELS_HELP = "Comma-separated forecasters (registered names; add lstm, mstl for the slow ones)."
STRICT_HELP = ("Strict lead: every step of the test window is forecast from exactly --horizon before it "
               "(origins every step; default models naive_last, seasonal_naive_daily, gbm).")
STRICT_MODELS = "naive_last,seasonal_naive_daily,gbm"


def _run_strict(frame: Any, freq: str, horizon: str, season: str, models: str | None, test_window: str,
                val_window: str, as_json: bool, out: Path | None) -> None:
    from gpufleet.analytics.forecast_strict import evaluate_strict
    from gpufleet.models.forecast_base import steps_per

    try:
        lead = steps_per(horizon, freq)
        seasons = [steps_per(s.strip(), freq) for s in season.split(",") if s.strip()]
        n_test, n_val = steps_per(test_window, freq), steps_per(val_window, freq)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    names = tuple(m.strip() for m in (models or STRICT_MODELS).split(",") if m.strip())
    s0 = seasons[0] if seasons else max(lead, 2)
    try:
        summary, _ = evaluate_strict(frame, freq, lead, s0, names, n_test=n_test, n_val=n_val,
                                     n_warm=max(2 * lead, n_val // 4), n_cal=n_val)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "backtest.json").write_text(json.dumps(_clean(summary), indent=1))
    if as_json:
        typer.echo(json.dumps(_clean(summary)))
        return
    from gpufleet.analytics.forecast_report import strict_table

    typer.echo(f"strict lead {lead} steps ({horizon} at {freq}); default: {summary['default']} (chosen on the "
               f"validation window {summary['windows']['val'][0]} .. {summary['windows']['val'][1]})\n")
    typer.echo(strict_table(summary))


@forecast_app.command("backtest")
def backtest(
    csv: Path = typer.Option(..., "--csv", help="CSV file with one row per (time[, series])."),
    time_col: str = typer.Option("time", "--time-col"),
    value_col: str = typer.Option(..., "--value-col"),
    series_col: str | None = typer.Option(None, "--series-col", help="Column naming the series (long format)."),
    freq: str = typer.Option("1h", "--freq", help="Step: 10min, 1h, ..."),
    agg: str = typer.Option("mean", "--agg", help="mean | max | sum within a step."),
    horizon: str = typer.Option("1d", "--horizon"),
    season: str = typer.Option("1d,7d", "--season", help="Seasonal periods; the first one scales MASE."),
    models: str = typer.Option(DAY_AHEAD, "--models", help=MODELS_HELP),
    test_origins: int = typer.Option(7, "--test-origins"),
    val_origins: int = typer.Option(7, "--val-origins"),
    jobs: int = typer.Option(1, "--jobs", help="Processes (one series each)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    out: Path | None = typer.Option(None, "--out", help="Write report.md, fan PNGs, metrics.csv here."),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    test_window: str = typer.Option("7d", "--test-window", help="--strict: length of the test window."),
    val_window: str = typer.Option("7d", "--val-window", help="--strict: length of the validation window."),
    outage_value: float | None = typer.Option(None, "--outage-value", help="The value that marks an outage "
                                              "when the whole cluster reads it (e.g. 0); by default zeros are "
                                              "demand and only steps without a row are missing."),
) -> None:
    """Rolling-origin backtest of the forecasters on a CSV: MASE, sMAPE, pinball, 80/95 % coverage per model
    and series; the default model is chosen on validation origins before the test origins. Zeros are demand;
    steps without a row (or reading --outage-value across the whole cluster) are missing. With --strict every
    test step is forecast exactly --horizon ahead (MAE, ratio to naive_last, MASE, coverage).

    Example: gpufleet forecast backtest --csv demand.csv --time-col time --value-col gpus --freq 10min --strict \
    --horizon 1h --json
    """
    from gpufleet.analytics.forecast import demand_from_csv

    if not csv.exists():
        raise InputError("no such file", path=str(csv))
    frame = demand_from_csv(csv, time_col, value_col, series_col, freq, agg, outage_value)
    if strict:
        _run_strict(frame, freq, horizon, season, models if models != DAY_AHEAD else None, test_window,
                    val_window, as_json, out)
        return
    _run(frame, freq, horizon, season, models, test_origins, val_origins, jobs, as_json, out)


@forecast_app.command("helios")
def helios(
    folder: Path | None = typer.Option(None, "--data", "--dir", help="The helios-earth-vc folder "
                                       "(default: where `gpufleet data fetch helios` puts it)."),
    freq: str = typer.Option("1h", "--freq"),
    agg: str = typer.Option("mean", "--agg"),
    horizon: str = typer.Option("1d", "--horizon"),
    models: str = typer.Option(DAY_AHEAD, "--models", help=MODELS_HELP),
    jobs: int = typer.Option(2, "--jobs"),
    as_json: bool = typer.Option(False, "--json"),
    out: Path | None = typer.Option(None, "--out"),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    outage_value: float | None = typer.Option(None, "--outage-value", help="Value marking an outage when the "
                                              "whole cluster reads it (default: zeros are demand)."),
) -> None:
    """Backtest on the Helios Earth trace: 16 VCs + total, demand = running + pending GPUs, last 7 days as
    test origins, the 7 before for validation.

    Example: gpufleet forecast helios --freq 1h --out helios-report
    Example: gpufleet forecast helios --strict --freq 10min --horizon 1h --json
    """
    from gpufleet.analytics.forecast import demand_from_helios

    frame = demand_from_helios(_helios(folder), freq, agg, outage_value=outage_value)
    if strict:
        _run_strict(frame, freq, horizon, "1d", models if models != DAY_AHEAD else None, "7d", "7d", as_json,
                    out)
        return
    _run(frame, freq, horizon, "1d,7d", models, 7, 7, jobs, as_json, out)


@forecast_app.command("genai")
def genai(
    folder: Path = typer.Option(..., "--data", "--dir", help="The alibaba-genai-2026 folder (holds "
                                "pod_gpu_duty_cycle_anon.tar.gz), e.g. ../shared/data/alibaba-genai-2026."),
    horizon: str = typer.Option("10min", "--horizon", help="Lead (strict)."),
    models: str | None = typer.Option(None, "--models", help=MODELS_HELP),
    as_json: bool = typer.Option(False, "--json"),
    out: Path | None = typer.Option(None, "--out"),
) -> None:
    """Strict-lead backtest on the Alibaba GenAI 2026 per-pod GPU duty cycle (1-minute steps, busy-GPU
    equivalents, pods present in >= 90 % of the steps + total): test = the last 4 hours, validation = the 4
    before; the trace spans 23 hours, so the season is 1 hour.

    Example: gpufleet forecast genai --data ../shared/data/alibaba-genai-2026 --horizon 10min --json
    """
    from gpufleet.analytics.forecast import demand_from_genai

    if not folder.exists():
        raise InputError("no such folder", path=str(folder))
    frame = demand_from_genai(folder, "1min")
    _run_strict(frame, "1min", horizon, "1h", models, "4h", "4h", as_json, out)


@forecast_app.command("autoscale")
def autoscale(
    folder: Path | None = typer.Option(None, "--data", "--dir", help="The helios-earth-vc folder "
                                       "(default: where `gpufleet data fetch helios` puts it)."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node"),
    out_window: float = typer.Option(300, "--scale-out-window", help="Seconds pending GPUs must persist."),
    in_window: float = typer.Option(1800, "--scale-in-window", help="Seconds idle GPUs must persist."),
    delay: float = typer.Option(300, "--provision-delay", help="Seconds until a new node serves."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Replay Helios demand (running + pending GPUs per minute) through the stabilised autoscaler and the
    reactive rule (current queue only): GPU-hours idle, GPU-hours pending and scaling events.

    Example: gpufleet forecast autoscale --gpus-per-node 8 --json
    """
    from gpufleet.allocator.autoscale import AutoscaleSettings, autoscale_backtest

    st = AutoscaleSettings(gpus_per_node=gpus_per_node, scale_out_window_s=out_window, scale_in_window_s=in_window)
    rows = autoscale_backtest(_helios(folder), st, delay)
    if as_json:
        typer.echo(json.dumps(_clean(rows)))
        return
    for r in rows:
        typer.echo(f"{r['series']:>6}  stabilised idle {r['idle_gpu_hours']:8.0f} pending {r['pending_gpu_hours']:7.0f}"
                   f" events {r['scale_events']:5d} | reactive idle {r['reactive_idle_gpu_hours']:8.0f} pending "
                   f"{r['reactive_pending_gpu_hours']:7.0f} events {r['reactive_scale_events']:5d}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(forecast_app, name="forecast")
