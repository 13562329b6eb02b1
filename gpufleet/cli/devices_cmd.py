"""CLI: `gpufleet devices`: list the GPUs of this machine (or of the digital twin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from exporter.errors import ConfigError, SourceUnavailable
from exporter.schema import Device
from exporter.sources.base import Source
from gpufleet.settings import Settings, load_settings


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.0f} GiB"


def _twin_source(settings: Settings) -> Source:
    """The digital twin's Source, built from the [twin] settings as `gpufleet exporter --source twin` does."""
    try:
        from simulator.twin import TwinConfig, TwinSource
    except ImportError:
        raise SourceUnavailable("the digital twin (simulator.twin) is not available in this build") from None
    tw = settings.twin
    config = TwinConfig(nodes=tw.nodes, gpus_per_node=tw.gpus_per_node, seed=tw.seed, inventory=tw.inventory,
                        failures=tw.failures)
    config.validate()
    return TwinSource(config, speed=tw.speed)


def list_devices(source: str, settings: Settings) -> list[Device]:
    """Open a source, read its inventory, close it."""
    src: Source
    if source == "nvml":
        from exporter.sources.nvml import NvmlSource

        src = NvmlSource(collectors=[], node=settings.exporter.node_name, proc_root=settings.exporter.proc_root)
    elif source == "twin":
        src = _twin_source(settings)
    else:
        raise ConfigError(f"--source must be nvml or twin, got {source!r}")
    with src:
        return src.devices()


def _as_dict(d: Device) -> dict[str, Any]:
    out = {k: getattr(d, k) for k in Device.__slots__ if not k.startswith("_")}
    return {k: v for k, v in out.items() if v is not None}


def devices(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of one line per GPU."),
    source: str = typer.Option("nvml", "--source", "-s", help="nvml (this machine's GPUs) or twin (simulated)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
) -> None:
    """List the GPUs, like `nvidia-smi -L`, with UUID, model, memory and driver (MIG instances indented).

    Without an NVIDIA driver it says so in one line; `--source twin` lists the simulated fleet instead.

    Example: gpufleet devices --json
    """
    settings = load_settings(config)
    devs = list_devices(source, settings)
    if as_json:
        typer.echo(json.dumps([_as_dict(d) for d in devs], indent=2))
        return
    if not devs:
        typer.echo("no GPUs found")
        return
    for d in devs:
        if d.is_mig:
            typer.echo(f"  MIG {d.mig_profile or '?'} Device (GI {d.mig_gi_id}, CI {d.mig_ci_id}) "
                       f"(UUID: {d.uuid}) memory {_gib(d.memory_total_bytes)}")
        else:
            node = f" node {d.node}" if source == "twin" else ""
            typer.echo(f"GPU {d.index}: {d.model} (UUID: {d.uuid}) memory {_gib(d.memory_total_bytes)} "
                       f"driver {d.driver_version or '?'}{node}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("devices")(devices)
