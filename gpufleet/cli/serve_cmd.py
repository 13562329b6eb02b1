"""CLI: `gpufleet init`, `gpufleet serve`, `gpufleet demo`."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    data_dir: Path = typer.Option(Path("./gpufleet-data"), "--data-dir", "-d", help="The service's data folder."),
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
                                              "Prometheus (default 127.0.0.1:9835)."),
    interval: float | None = typer.Option(None, "--interval", help="Collection interval in seconds."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file (docs/configuration.md)."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds."),
) -> None:
    """Run the gpufleet service: collection, /metrics, history store, alert engine, allocator queue,
    scheduled failure scoring / forecasting / retraining, and the API, started and stopped together.

    SIGTERM (or Ctrl-C) stops it gracefully: buffers are flushed, queue and alert state persisted.

    Example: gpufleet init -d /var/lib/gpufleet && gpufleet serve -d /var/lib/gpufleet --source twin
    """
    import contextlib
    import json
    import logging
    import signal
    import threading

    from gpufleet.logs import setup_logging
    from gpufleet.service import Service
    from gpufleet.settings import load_settings

    settings = load_settings(config, {
        "data_dir": data_dir,
        "exporter": {"source": source, "listen": metrics_listen, "interval": interval},
        "api": {"listen": listen},
    })
    setup_logging(settings.log_level, settings.log_json)
    service = Service(settings)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        service.start()
        typer.echo(json.dumps({"event": "serving", "api": service.api.url if service.api else None,
                               "docs": f"{service.api.url}/docs" if service.api else None,
                               "metrics": service.metrics_server.url, "source": service.source.name,
                               "data_dir": str(settings.data_dir)}))
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(duration)
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.stop()
        logging.getLogger("gpufleet").info("stopped")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("serve")(serve)
