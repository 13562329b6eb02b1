"""The `gpufleet` command line. Only this package picks exit codes.

Each command group lives in its own module and is registered explicitly below.
"""

from __future__ import annotations

import inspect
import logging
import sys

import typer

from gpufleet import __version__
from gpufleet.cli import (
    alerting_cmd,
    allocator_cmd,
    audit_cmd,
    cluster_cmd,
    config_cmd,
    dashboards_cmd,
    devices_cmd,
    exporter_cmd,
    failure_cmd,
    forecast_cmd,
    history_cmd,
    report_cmd,
    serve_cmd,
    twin_cmd,
)
from gpufleet.exporter.errors import (
    BackendUnavailable,
    ConfigError,
    GpufleetError,
    InputError,
    SourceUnavailable,
)

app = typer.Typer(
    name="gpufleet",
    help=(
        "Observability and predictive operations for GPU fleets.\n\n"
        "Collect NVML telemetry (or run the digital twin), store its history, predict GPU failures, "
        "forecast demand, place jobs, plan capacity, alert and draw dashboards.\n\n"
        "Example: gpufleet demo            # everything on a simulated fleet, no GPU needed"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpufleet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for module in (devices_cmd, exporter_cmd, config_cmd, twin_cmd, history_cmd, failure_cmd, forecast_cmd, allocator_cmd,
               alerting_cmd, dashboards_cmd, report_cmd, serve_cmd, audit_cmd, cluster_cmd):
    module.register(app)


def _one_line_summaries(typer_app: typer.Typer) -> None:
    """Command lists show each command's first docstring paragraph on one line.

    Typer's rich help keeps the docstring's hard line breaks in the command table, which wraps it
    raggedly; a ``short_help`` made of the first paragraph with its line breaks joined reads cleanly.
    """
    for info in typer_app.registered_commands:
        doc = inspect.getdoc(info.callback) if info.callback is not None else None
        if info.short_help is None and info.help is None and doc:
            info.short_help = " ".join(doc.split("\n\n")[0].split())
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _one_line_summaries(group.typer_instance)


_one_line_summaries(app)

EXIT_CODES: list[tuple[type[GpufleetError], int]] = [
    (ConfigError, 2),
    (InputError, 3),
    (SourceUnavailable, 4),
    (BackendUnavailable, 5),
]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: typed errors become one clear line and an exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except GpufleetError as exc:
        code = next((c for t, c in EXIT_CODES if isinstance(exc, t)), 1)
        typer.secho(f"gpufleet: error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
