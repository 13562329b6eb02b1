"""CLI: `gpufleet failure` commands: evaluate predictors (twin / real records), train, score."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from gpufleet.cli.common import parse_time
from gpufleet.exporter.errors import ConfigError, NotFound

failure_app = typer.Typer(name="failure", no_args_is_help=True,
                          help="GPU failure prediction: evaluate models, train the champion, score the fleet.")

DATASETS = {"twin": None, "titan": "titan-gpu-lifetimes", "infinitehbd": "infinitehbd-faults"}


def _progress() -> Any:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(), transient=True)


def _data_path(dataset: str, data: Path | None) -> Path:
    """--data, else where `gpufleet data fetch <dataset>` puts it; missing: how to fetch it."""
    from gpufleet.datasets import default_path, require
    from gpufleet.settings import load_settings

    return require(dataset, data if data is not None else default_path(dataset, load_settings().data_dir))


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from gpufleet.analytics.failure_report import COLUMNS, PROVENANCE, _fmt

    console = Console()
    console.print(PROVENANCE.get(result["dataset"], "").replace("**", ""))
    table = Table(title=f"failure evaluation: {result['dataset']}")
    table.add_column("model")
    table.add_column("horizon")
    short = {"positives": "pos", "pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "recall_at_precision_0.5": "R@P≥.5",
             "recall_at_1_false_alarm_per_1000_gpu_days": "R@1FA/kGPUd", "brier": "Brier", "c_index": "C-index"}
    for c in COLUMNS:
        table.add_column(short.get(c, c), justify="right")
    for name, per in result["models"].items():
        for h, b in per.items():
            if isinstance(b, dict):
                table.add_row(name, h, *(_fmt(b.get(c)) for c in COLUMNS))
    console.print(table)


@failure_app.command("evaluate")
def evaluate(
    dataset: str = typer.Option(..., "--dataset", help="twin, titan or infinitehbd."),
    data: Path | None = typer.Option(None, "--data", help="Data folder (default: where "
                                     "`gpufleet data fetch DATASET` puts it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    out: Path | None = typer.Option(None, "--out", help="Write report.md and PNG figures into this folder."),
    seed: int = typer.Option(0, "--seed", help="Model seed."),
    split: str = typer.Option("2017-01-01", "--split", help="titan: train on failures before this date."),
    quick: bool = typer.Option(False, "--quick", help="twin: a small fleet and tiny models (a smoke run)."),
    gpus: int = typer.Option(96, "--gpus", min=8, help="twin: GPUs per fleet (multiple of 8)."),
    days: float = typer.Option(30.0, "--days", min=10.0, help="twin: days simulated per fleet."),
    rate_multiplier: float = typer.Option(300.0, "--rate-multiplier", min=1.0,
                                          help="twin: failure-rate acceleration (real rates give too few labels)."),
    train_seeds: str = typer.Option("1,2", "--train-seeds", help="twin: training fleets (comma-separated seeds)."),
    test_seeds: str = typer.Option("3", "--test-seeds", help="twin: held-out fleets (comma-separated seeds)."),
    window_h: float = typer.Option(6.0, "--window-h", min=0.1, help="twin: window length in hours (e.g. 72)."),
    input_step_min: float | None = typer.Option(None, "--input-step-min", min=1.0,
                                                help="twin: coarsen the 5-minute grid to this step (e.g. 30)."),
    recent_h: float | None = typer.Option(None, "--recent-h", min=0.1,
                                          help="twin: rows of this window length whatever --window-h is (e.g. 6), "
                                               "so short and long windows are scored on the same GPU-hours."),
    derived: bool = typer.Option(False, "--derived", help="twin: add event-history, deviation and telemetry-health "
                                 "features (analytics.failure_features)."),
) -> None:
    """Backtest every failure model with a time split and print PR-AUC, ROC-AUC, recall at precision
    >= 0.5, recall at <= 1 false alarm per 1,000 GPU-days (and the concordance index for survival).

    twin: trains on twin seeds 1-2 (--train-seeds) before a split time, tests on held-out seed 3
    (--test-seeds) after it (figures flatter models: we designed the precursors); --window-h 72
    --input-step-min 30 --recent-h 6 gives 72 h windows at 30-minute steps on the 6 h rows. titan: Cox vs age-only survival on ORNL Titan GPU
    lifetimes. infinitehbd: event-history model vs the rate-only baseline on StepFun's fault trace.

    Example: gpufleet failure evaluate --dataset titan --json --out reports/titan
    """
    from gpufleet.analytics import failure, failure_report

    if dataset not in DATASETS:
        raise ConfigError(f"--dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    with _progress() as progress:
        task = progress.add_task(f"evaluating {dataset}", total=None)

        def note(msg: str) -> None:
            progress.update(task, description=f"{dataset}: {msg}")

        if dataset == "titan":
            from gpufleet.analytics import titan

            try:
                when = dt.datetime.fromisoformat(split)
            except ValueError:
                raise ConfigError(f"--split must be a date (YYYY-MM-DD), got {split!r}") from None
            note("loading")
            recs = titan.load(_data_path(dataset, data))
            note("fitting survival models")
            result = {"dataset": "titan", **titan.backtest(recs, when)}
        elif dataset == "infinitehbd":
            from gpufleet.analytics import infinitehbd

            note("loading")
            events = infinitehbd.load(_data_path(dataset, data))
            note("fitting event-history models")
            result = {"dataset": "infinitehbd", **infinitehbd.backtest(events)}
        else:
            kw: dict[str, Any] = {"nodes": 4, "days": 20.0, "horizons": (3600.0, 86400.0),
                                  "models": failure.default_models(seed, small=True)} if quick else \
                {"nodes": max(gpus // 8, 1), "days": days, "rate_multiplier": rate_multiplier}
            try:
                kw["train_seeds"] = tuple(int(x) for x in train_seeds.split(","))
                kw["test_seeds"] = tuple(int(x) for x in test_seeds.split(","))
            except ValueError:
                raise ConfigError(f"--train-seeds / --test-seeds must be integers, got {train_seeds!r} / "
                                  f"{test_seeds!r}") from None
            if set(kw["train_seeds"]) & set(kw["test_seeds"]):
                raise ConfigError("--train-seeds and --test-seeds must not share a fleet")
            kw.update(window=window_h * 3600.0, input_step=None if input_step_min is None else input_step_min * 60.0,
                      recent=None if recent_h is None else recent_h * 3600.0, derived=derived)
            result = failure.evaluate_twin(seed=seed, progress=note, **kw)
    if out is not None:
        md = failure_report.write_report(result, out)
        (out / "figures.json").write_text(json.dumps(failure.public(result), indent=2))
        if not as_json:
            typer.echo(f"report: {md}")
    if as_json:
        pub = failure.public(result)
        source = "twin: designed precursors, flattering" if dataset == "twin" else "real records"
        typer.echo(json.dumps({"dataset": pub["dataset"], "source": source, "models": pub["models"],
                               "meta": pub.get("meta", {})}, indent=2))
    else:
        _print_table(result)


def _history_source(store: Path | None, history: str | None) -> str:
    """Exactly one of --store and --history."""
    if (store is None) == (history is None):
        raise ConfigError("give exactly one of --store (a history store folder) and --history (a Prometheus / "
                          "VictoriaMetrics URL)")
    return str(store) if store is not None else str(history)


def _fleet_history(history: str, names: str, selector: str | None, since: float, until: float, step: float) -> Any:
    """History of every GPU from Prometheus / VictoriaMetrics, read in daily chunks."""
    from gpufleet.analytics.fleet.history import open_history, read_history
    from gpufleet.analytics.fleet.reader import selector_labels

    labels = selector_labels(selector) or None
    with open_history(history, names=names, selector=labels) as reader:
        return read_history(reader, since, until, step)


HISTORY_HELP = "Read history from this Prometheus / VictoriaMetrics URL instead of a store (the fleet's store)."


@failure_app.command("train")
def train(
    store: Path | None = typer.Option(None, "--store", help="History store folder (e.g. written by `gpufleet twin "
                                      "run`)."),
    history: str | None = typer.Option(None, "--history", help=HISTORY_HELP),
    names: str = typer.Option("native", "--history-names", help="With --history: native (gpufleet exporters) "
                              "or dcgm (dcgm-exporter)."),
    selector: str | None = typer.Option(None, "--history-selector", help='With --history: label matchers, '
                                        'e.g. {job="gpu"}.'),
    days: float = typer.Option(30.0, "--days", min=0.1, help="With --history: days of history before --as-of."),
    registry: Path = typer.Option(..., "--registry", help="Model registry folder."),
    model: str = typer.Option("lstm_failure", "--model", help="lstm_failure, gbt, logistic or rules."),
    step: float = typer.Option(60.0, "--step", min=1.0, help="Grid step in seconds."),
    window_h: float = typer.Option(6.0, "--window-h", min=0.1, help="Window length in hours."),
    as_of: str | None = typer.Option(None, "--as-of", help="Use data up to this time (default: the store's end)."),
    seed: int = typer.Option(0, "--seed"),
    derived: bool = typer.Option(False, "--derived", help="Add event-history, deviation and telemetry-health "
                                 "features (scoring derives them too)."),
) -> None:
    """Train a failure model on a history store, save it as a new registry version, and make it the
    champion only if it beats the current champion on the same validation windows.

    Example: gpufleet failure train --store ./twin-store --registry ./models
    Example: gpufleet failure train --history http://prometheus:9090 --days 30 --registry ./models
    """
    import time

    from gpufleet.analytics import failure
    from gpufleet.analytics.registry import Registry
    from gpufleet.models import failure_models

    _history_source(store, history)
    cls = failure_models().get(model)
    if cls is None or cls.kind != "failure":
        raise ConfigError(f"--model must be a failure model, got {model!r}")
    with _progress() as progress:
        progress.add_task("reading the history", total=None)
        if history is not None:
            until = float(parse_time(as_of, "--as-of") or 0.0) if as_of is not None else time.time()
            hist = _fleet_history(history, names, selector, until - days * 86400.0, until, step)
            if not hist.panel.uuids:
                raise NotFound(f"no GPU history at {history} in the {days:g} days before {until:.0f}")
        else:
            assert store is not None
            hist = failure.store_history(store, step=step)
        end = float(hist.panel.times[-1]) if as_of is None else float(parse_time(as_of, "--as-of") or 0.0)
        progress.add_task(f"training {model}", total=None)
        fm: Any = cls(seed=seed, window_s=window_h * 3600.0)  # type: ignore[call-arg]
        res = failure.train_and_register(hist, Registry(registry), as_of=end, model=fm, stride=3600.0,
                                         derived=derived)
    typer.echo(json.dumps(failure.public(res), indent=2))


@failure_app.command("score")
def score(
    store: Path | None = typer.Option(None, "--store", help="History store folder."),
    history: str | None = typer.Option(None, "--history", help=HISTORY_HELP),
    names: str = typer.Option("native", "--history-names", help="With --history: native or dcgm."),
    selector: str | None = typer.Option(None, "--history-selector", help='With --history: label matchers.'),
    registry: Path = typer.Option(..., "--registry", help="Model registry folder (its champion scores)."),
    top: int = typer.Option(10, "--top", min=1, help="Show the N riskiest GPUs with their top signals."),
    horizon: str = typer.Option("24h", "--horizon", help="Horizon to rank by (1h, 24h, 7d)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score every GPU's latest window with the champion model; list the riskiest GPUs and the signals
    that drove their scores (occlusion: the risk each field adds).

    Example: gpufleet failure score --store ./twin-store --registry ./models --top 10
    Example: gpufleet failure score --history http://prometheus:9090 --registry ./models
    """
    from gpufleet.analytics import failure, scoring
    from gpufleet.analytics.registry import Registry, drift

    _history_source(store, history)
    reg = Registry(registry)
    version = reg.champion()
    model = reg.load(version)
    meta = reg.meta(version) if version else {}
    window = float(model.window_s)
    step = float(meta.get("step_s", 60.0))
    from gpufleet.models.failure_base import horizon_label

    have = [horizon_label(h) for h in model.horizons_]
    if horizon not in have:
        typer.secho(f"the champion has no {horizon} horizon; ranking by {have[-1]}", fg=typer.colors.YELLOW, err=True)
        horizon = have[-1]
    if history is not None:
        import time

        now = time.time()
        hist = _fleet_history(history, names, selector, now - window, now, step)
        if not hist.panel.uuids:
            raise NotFound(f"no GPU history at {history} in the last {window / 3600:g} h")
    else:
        from gpufleet.exporter.store import HistoryStore

        assert store is not None  # _history_source: exactly one of the two
        _lo, hi = HistoryStore(store, create=False).span()
        if hi is None:
            raise NotFound(f"the history store {store} is empty")
        hist = failure.store_history(store, since=hi - window, step=step)
    scores = scoring.score_panel(model, hist.panel, window=window, version=version)
    scoring.explain_top(model, hist.panel, scores, n=top, horizon=horizon, window=window)
    d = drift(meta.get("score_reference", []), scores.risk[:, min(1, scores.risk.shape[1] - 1)]) \
        if len(scores.uuids) else {"psi": None, "alert": False}
    rows: list[dict[str, Any]] = [{"uuid": u, "risk": r, "signals": scores.signals.get(u, [])}
                                  for u, r in scores.top(top, horizon)]
    if as_json:
        typer.echo(json.dumps({"version": version, "model": model.name, "ts": scores.ts, "horizon": horizon,
                               "drift": d, "top": rows, "risk": scores.by_uuid()}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"failure risk ({model.name} {version}, horizon {horizon})")
    for c in ("uuid", "risk", "top signals"):
        table.add_column(c)
    for r in rows:
        table.add_row(r["uuid"], f"{r['risk']:.4f}", ", ".join(f"{f} +{v:.3f}" for f, v in r["signals"]) or "—")
    Console().print(table)
    if d.get("alert"):
        typer.secho(f"score drift: PSI {d['psi']:.3f} > 0.2 against the training reference", fg=typer.colors.YELLOW)




def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(failure_app)
