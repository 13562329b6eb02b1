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


def register(app: typer.Typer) -> None:
    app.command("init")(init)
