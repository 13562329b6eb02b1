"""The `gpufleet` command line. Only this package picks exit codes.

Each command group lives in its own module and is registered explicitly below.
"""

from __future__ import annotations

import inspect
import logging
import sys
from typing import Any

import typer

from gpufleet import __version__
from gpufleet.cli import (
    alerting_cmd,
    allocator_cmd,
    audit_cmd,
    cluster_cmd,
    config_cmd,
    dashboards_cmd,
    data_cmd,
    devices_cmd,
    exporter_cmd,
    failure_cmd,
    forecast_cmd,
    history_cmd,
    jobs_cmd,
    report_cmd,
    serve_cmd,
    twin_cmd,
    worker_cmd,
)
from gpufleet.exporter.errors import (
    BackendUnavailable,
    ConfigError,
    GpufleetError,
    InputError,
    SourceUnavailable,
)
from gpufleet.extras import extras_required

try:  # typer >= 0.2x vendors its own click and raises that copy's exceptions
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer uses the real click
    from click import exceptions as _click_exc  # type: ignore[no-redef]
_NoArgsIsHelp: Any = getattr(_click_exc, "NoArgsIsHelpError", ())  # click < 8.2 prints the help itself

app = typer.Typer(
    name="gpufleet",
    help=(
        "Observability and predictive operations for GPU fleets.\n\n"
        "Collect NVML telemetry (or run the digital twin), store its history, predict GPU failures, "
        "forecast demand, place jobs, plan capacity, alert and draw dashboards.\n\n"
        "Example: gpufleet demo            # everything on a simulated fleet, no GPU needed"
    ),
    epilog=("Exit codes: 0 ok · 1 the command failed (e.g. audit verify found a break) · 2 usage or "
            "configuration error · 3 malformed input file (or allocator submit rejected a job) · 4 no GPU "
            "source · 5 a server is unreachable · 130 interrupted (docs/development.md)"),
    no_args_is_help=True,
    add_completion=True,  # gpufleet --install-completion / --show-completion (bash, zsh, fish, PowerShell)
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
               alerting_cmd, dashboards_cmd, report_cmd, serve_cmd, audit_cmd, cluster_cmd, data_cmd, jobs_cmd,
               worker_cmd):
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


def run(argv: list[str] | None = None) -> int:
    """Run the CLI once and return its exit code (see the table in ``gpufleet --help``).

    A typed error becomes one line ``gpufleet: error: ...``; a usage error (unknown flag, bad or missing
    value) one line naming it, exit 2; a command's ``typer.Exit(n)`` exits n. Anything else is a bug and
    keeps its traceback.
    """
    try:
        with extras_required():  # a missing optional extra: one line naming it (ConfigError's code)
            rv = app(args=argv, prog_name="gpufleet", standalone_mode=False)
    except GpufleetError as exc:
        code = next((c for t, c in EXIT_CODES if isinstance(exc, t)), 1)
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # always one line
        typer.secho(f"gpufleet: error: {message or type(exc).__name__}", fg=typer.colors.RED, err=True)
        return code
    except _NoArgsIsHelp as exc:  # a group run without a command: its help, as click does
        exc.show()
        return exc.exit_code
    except _click_exc.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "gpufleet"
        hint = f" (see '{where} --help')" if exc.ctx is not None else ""
        message = " ".join(exc.format_message().split())
        typer.secho(f"{where}: error: {message}{hint}", fg=typer.colors.RED, err=True)
        return exc.exit_code
    except _click_exc.ClickException as exc:
        typer.secho(f"gpufleet: error: {' '.join(exc.format_message().split())}", fg=typer.colors.RED, err=True)
        return exc.exit_code
    except typer.Exit as exc:  # raised outside a command (typer returns the code of those inside)
        return exc.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    # standalone_mode=False hands back typer.Exit(n)'s code, or the command's return value (None: success)
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exits with :func:`run`'s code (returns normally on success)."""
    code = run(argv)
    if code:
        sys.exit(code)
