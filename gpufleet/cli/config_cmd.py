"""CLI: `gpufleet config show`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gpufleet.settings import load_settings, masked

config_app = typer.Typer(help="Inspect gpufleet's settings.", no_args_is_help=True)


@config_app.command("show")
def show(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of TOML-like text."),
) -> None:
    """Print the effective settings (defaults < config file < GPUFLEET_* environment), secrets masked.

    Example: GPUFLEET_EXPORTER__INTERVAL=5 gpufleet config show --config /etc/gpufleet.toml
    """
    data = masked(load_settings(config))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    _print_toml(data)


def _print_toml(data: dict, prefix: str = "") -> None:  # type: ignore[type-arg]
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if prefix:
        typer.echo(f"\n[{prefix}]")
    for k, v in flat.items():
        typer.echo(f"{k} = {json.dumps(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            _print_toml(v, f"{prefix}.{k}" if prefix else k)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
