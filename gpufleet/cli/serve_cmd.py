"""CLI: `gpufleet init`, `gpufleet serve`, `gpufleet demo`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from gpufleet.demo import DemoConfig
    from gpufleet.service import Service


def init(
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d", help="The service's data folder "
                                         "(default $XDG_DATA_HOME/gpufleet or ~/.local/share/gpufleet)."),
    admin: str = typer.Option("admin", "--admin", help="Name of the first admin user."),
    admin_password_file: Path | None = typer.Option(
        None, "--admin-password-file", help="Read the admin password from this file instead of generating one."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
) -> None:
    """Prepare a data folder: the JWT signing key (mode 0600), the database and the first admin.

    A generated admin password is shown once; nothing secret is built in.

    Example: gpufleet init --data-dir /var/lib/gpufleet --admin-password-file /run/secrets/admin
    """
    from gpufleet.api.context import initialise
    from gpufleet.settings import load_settings

    settings = load_settings(config, {"data_dir": data_dir})
    result = initialise(settings.api, settings.data_dir, admin=admin, password_file=admin_password_file)
    typer.echo(f"signing key: {result.key_file} (mode 0600)")
    typer.echo(f"database:    {result.database}")
    if result.password:
        typer.secho(f"admin user {result.admin!r} created; password (shown once): {result.password}",
                    fg=typer.colors.YELLOW)
    else:
        typer.echo(f"admin user {result.admin!r} created with the password from {admin_password_file}")


def serve(
    source: str | None = typer.Option(None, "--source", help="nvml (real GPUs), twin (simulated fleet) or auto."),
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d", help="Data folder (history, queue, alert "
                                         "state, database, signing key); run `gpufleet init` on it first."),
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT of the API (default 127.0.0.1:8080)."),
    metrics_listen: str | None = typer.Option(None, "--metrics-listen", help="HOST:PORT of /metrics for "
                                              "Prometheus (default 127.0.0.1:19836; the exporter's is 19835)."),
    interval: float | None = typer.Option(None, "--interval", help="Collection interval in seconds."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file (docs/configuration.md)."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds."),
    fleet_url: str | None = typer.Option(None, "--fleet-url", help="Fleet mode: read every node's GPUs and their "
                                         "history from this Prometheus / VictoriaMetrics query URL (no local GPU "
                                         "needed; docs/fleet.md)."),
    fleet_kind: str | None = typer.Option(None, "--fleet-kind", help="prometheus or victoriametrics."),
    fleet_names: str | None = typer.Option(None, "--fleet-names", help="native (gpufleet exporters), dcgm "
                                           "(dcgm-exporter) or auto (default: whichever is there)."),
    fleet_selector: str | None = typer.Option(None, "--fleet-selector", help='Label matchers of the GPU '
                                              'exporters\' series, e.g. \'{job="gpu"}\'.'),
) -> None:
    """Run the gpufleet service: collection, /metrics, history store, alert engine, allocator queue,
    scheduled failure scoring / forecasting / retraining, and the API, started and stopped together.

    SIGTERM (or Ctrl-C) stops it gracefully: buffers are flushed, queue and alert state persisted.

    Example: gpufleet init -d /var/lib/gpufleet && gpufleet serve -d /var/lib/gpufleet --source twin
    Example: gpufleet serve -d /var/lib/gpufleet --fleet-url http://prometheus:9090 --fleet-selector '{job="gpu"}'
    """
    from gpufleet.logs import setup_logging
    from gpufleet.service import build_service
    from gpufleet.settings import load_settings

    settings = load_settings(config, {
        "data_dir": data_dir,
        "exporter": {"source": source, "interval": interval},
        "serve": {"metrics_listen": metrics_listen},
        "api": {"listen": listen},
        "fleet": {"url": fleet_url, "kind": fleet_kind, "names": fleet_names, "selector": fleet_selector},
    })
    setup_logging(settings.log_level, settings.log_json)
    _run_until_stopped(build_service(settings), duration)


def _run_until_stopped(service: Service, duration: float | None) -> None:
    """Start the service, print where it serves, run until SIGTERM / Ctrl-C (or ``duration``), stop it."""
    import contextlib
    import json
    import logging
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        service.start()
        api = service.api.url if service.api else None
        typer.echo(json.dumps({"event": "serving", "api": api, "docs": f"{api}/docs" if api else None,
                               "console": f"{api}/" if api else None,
                               "metrics": service.metrics_server.url, "source": service.source.name,
                               "data_dir": str(service.data_dir)}))
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(duration)
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.stop()
        logging.getLogger("gpufleet").info("stopped")


def demo(
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for everything the demo writes "
                                    "(default: <data-dir>/demo, i.e. ~/.local/share/gpufleet/demo)."),
    nodes: int = typer.Option(4, "--nodes", min=1, help="Simulated nodes."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", min=1, max=16, help="GPUs per node."),
    days: float = typer.Option(14.0, "--days", min=2.0, help="Simulated days (accelerated)."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed gives the same demo."),
    notify: list[str] = typer.Option([], "--notify", help="Also send alerts to this apprise URL (repeatable), "
                                     "e.g. mailtos://user:pass@smtp.example.com or a Slack webhook."),
    serve_after: bool = typer.Option(False, "--serve", help="Then keep running the service on the generated "
                                     "history (API, web console, /metrics), the twin going on from where "
                                     "the accelerated run ended, in real time; Ctrl-C stops it."),
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="API address with --serve."),
    metrics_listen: str = typer.Option("127.0.0.1:19836", "--metrics-listen", help="/metrics address with --serve."),
    live: bool = typer.Option(True, "--live/--no-live", help="After the accelerated part, run a few real "
                              "checkpointing torch jobs through the local executor on twin GPUs, make the GPU "
                              "under one fall off the bus and watch it resume elsewhere (about 15 s)."),
) -> None:
    """The whole loop on a simulated fleet, no GPU and no server needed: the digital twin runs an
    accelerated two weeks with failures, the history store fills, the failure predictor trains and scores
    every GPU, the allocator places jobs risk-aware, alerts go to a local outbox, the demand forecaster and
    capacity planner run, dashboards and reports are written; then a short live part with real jobs, a GPU
    fault and a resume from checkpoint; then a one-screen summary. Exits 1 if the live part fails.

    Example: gpufleet demo --out ./gpufleet-demo --serve
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from gpufleet.demo import DemoConfig, run

    if out is None:
        from gpufleet.settings import load_settings

        out = load_settings().data_dir / "demo"
    cfg = DemoConfig(out=out, nodes=nodes, gpus_per_node=gpus_per_node, days=days, seed=seed, notify_urls=list(notify),
                     live=live)
    console = Console()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("simulating the fleet", total=1.0)

        def progress(stage: str, frac: float) -> None:
            bar.update(task, description=stage, completed=min(1.0, frac) if frac else bar.tasks[0].completed)

        result = run(cfg, progress)
        bar.update(task, completed=1.0, description="done")
    table = Table(title=f"gpufleet demo: {result.gpus} GPUs, {days:g} simulated days, {result.seconds:.0f} s",
                  show_header=False)
    table.add_row("history", f"{result.samples:,} samples in {result.paths['history']}")
    table.add_row("failures", f"{result.failures} happened ({result.failures_after_training} after the predictor "
                  f"was trained); of those, {result.predicted} flagged > 50 % risk and {result.ranked_top3} among the "
                  f"3 riskiest GPUs within 24 h before; {result.alarms} hourly alarms > 50 % in all")
    auc = result.val_metrics.get("24h", {}).get("pr_auc") if result.val_metrics else None
    table.add_row("predictor", f"{result.model}; validation PR-AUC 24 h: {auc:.2f}" if auc is not None
                  else f"{result.model or 'not trained'}" + (f" ({result.train_note})" if result.train_note else ""))
    fc = result.forecast
    table.add_row("forecast", f"{fc.get('model')}: MASE {fc.get('mase') or float('nan'):.2f}, 80 % coverage "
                  f"{fc.get('coverage80') or float('nan'):.2f}; median demand next day {fc.get('median_next_day', 0):.1f} GPUs")
    pl = result.plan
    for gpu_type, tp in sorted(pl.get("by_type", {}).items()):
        line = f"{tp['reserved']} of {tp.get('installed')} {gpu_type} ({tp['option'].replace('_', ' ')})"
        if tp.get("expected_cost") is not None:
            lo, hi = tp["cost_interval90"]
            line += f"; expected {tp['expected_cost']:,.0f} {pl.get('currency')} per week [90 %: {lo:,.0f} - {hi:,.0f}]"
        table.add_row(f"reserve {gpu_type}", line)
    if pl.get("note"):
        table.add_row("plan", str(pl["note"]))
    table.add_row("alerts", f"{result.notifications} notifications in {result.paths['outbox']}; alerts fired: "
                  + (", ".join(f"{k} x{v}" for k, v in sorted(result.alerts_by_rule.items())) or "none"))
    table.add_row("jobs", f"{result.jobs:,} jobs placed by the risk-aware allocator")
    lv = result.live
    if lv is not None and "error" in lv:
        table.add_row("live", f"[red]FAILED: {lv['error']}[/red]")
    elif lv is not None:
        table.add_row("live", f"{lv['succeeded']} of {lv['jobs']} real training jobs finished on the local executor; "
                      f"the GPU under {lv['job']} fell off the bus at step {lv['stopped_at_step']} of {lv['steps']}: it "
                      f"resumed on {', '.join(lv['resumed_on'])} from its checkpoint at step {lv['resumed_from_step']} "
                      f"in {lv['resumed_in_s']:g} s, {lv['steps_lost']} steps lost (checkpoint every "
                      f"{lv['checkpoint_every']}), {lv['steps_saved']} kept; final weights "
                      + ("bit-identical to an uninterrupted run" if lv["weights_identical"] else "[red]DIFFER[/red] "
                         "from an uninterrupted run") + f"; log {lv['log']}")
    for key in ("capacity_report", "cost_report", "dashboards", "models"):
        table.add_row(key.replace("_", " "), result.paths[key])
    table.add_row("summary", str(out / "summary.json"))
    console.print(table)
    console.print("Twin failures are accelerated and their precursors designed: predictor figures here flatter "
                  "any model; real-data figures are in docs/failure-prediction.md.")
    if result.live is not None and ("error" in result.live or not result.live["weights_identical"]):
        raise typer.Exit(1)  # the summary above says what went wrong
    if serve_after:
        _serve_demo(cfg, listen, metrics_listen)


def _serve_demo(cfg: DemoConfig, listen: str, metrics_listen: str) -> None:
    """`demo --serve`: the same service on the demo's data folder (its history, models, queue and alert
    state), the twin going on from the end of the accelerated run on a clock that keeps the demo's
    simulated time. A data folder without a signing key is initialised first, as `gpufleet init` does
    (the admin password is shown once)."""
    import time

    from gpufleet.api.context import initialise, key_path
    from gpufleet.demo import DAY, demo_settings
    from gpufleet.logs import setup_logging
    from gpufleet.service import build_service
    from gpufleet.simulator.twin import TwinConfig, TwinSource

    settings = demo_settings(cfg, api={"listen": listen}, serve={"metrics_listen": metrics_listen},
                             executor={"kind": "local"}, exporter={"interval": 5.0})
    setup_logging(settings.log_level, settings.log_json)
    if not key_path(settings.api, settings.data_dir).exists():
        result = initialise(settings.api, settings.data_dir)
        if result.password:
            typer.secho(f"admin user {result.admin!r} created; password (shown once): {result.password}",
                        fg=typer.colors.YELLOW)
    end = cfg.start + cfg.days * DAY
    offset = time.time() - end  # the service's clock goes on from the demo's last simulated instant

    def clock() -> float:
        return time.time() - offset

    source = TwinSource(TwinConfig(nodes=cfg.nodes, gpus_per_node=cfg.gpus_per_node, seed=cfg.seed,
                                   failure_rate_multiplier=cfg.failure_rate, fields="history"), start=end)
    _run_until_stopped(build_service(settings, source=source, clock=clock), None)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("serve")(serve)
    app.command("demo")(demo)
