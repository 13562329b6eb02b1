"""CLI: `gpufleet data list|fetch` — the public datasets the evaluation, forecasting and replay commands read."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Public datasets the commands read: where they come from, and fetching them.",
                       no_args_is_help=True)


@data_app.command("list")
def list_cmd() -> None:
    """List each dataset: its source repository and pinned revision, licence and the commands that read it.

    Example: gpufleet data list
    """
    from gpufleet.datasets import DATASETS

    for ds in DATASETS.values():
        typer.echo(f"{ds.name:<12} {ds.repo}@{ds.revision[:12]}  {len(ds.files)} files  used by: {ds.used_by}")
        typer.echo(f"{'':<12} licence: {ds.license}")


@data_app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help="Dataset: titan, infinitehbd, helios or openb (see `gpufleet data list`)."),
    dest: Path | None = typer.Option(None, "--dest", help="Folder for the dataset (default "
                                     "<data-dir>/datasets/<folder>, the commands' default --data)."),
    mirror: str | None = typer.Option(None, "--mirror", help="Fetch from a mirror laid out as "
                                      "<URL>/<repo>/<revision>/<path> instead of raw.githubusercontent.com."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file (for data_dir)."),
) -> None:
    """Download a public dataset from its source at a pinned revision and check every file's SHA-256.

    Files already present with the right digest are kept; a wrong or failed download keeps nothing.

    Example: gpufleet data fetch titan && gpufleet failure evaluate --dataset titan
    """
    from gpufleet.datasets import GITHUB_RAW, dataset, default_path, fetch
    from gpufleet.settings import load_settings

    ds = dataset(name)
    target = dest if dest is not None else default_path(name, load_settings(config).data_dir)
    paths = fetch(name, target, base_url=mirror or GITHUB_RAW,
                  progress=lambda f, size: typer.echo(f"fetched {f.path} ({size:,} bytes, sha256 ok)", err=True))
    typer.echo(f"{ds.name}: {len(paths)} files in {target} ({ds.repo}@{ds.revision[:12]})")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
