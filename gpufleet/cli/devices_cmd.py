"""CLI: `gpufleet devices`: list the GPUs of this machine (or of the digital twin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from gpufleet.exporter.errors import ConfigError, SourceUnavailable
from gpufleet.exporter.schema import Device
from gpufleet.exporter.sources.base import Source
from gpufleet.settings import Settings, load_settings


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.0f} GiB"


def _twin_source(settings: Settings) -> Source:
    """The digital twin's Source, built from the [twin] settings as `gpufleet exporter --source twin` does."""
    try:
        from gpufleet.simulator.twin import TwinConfig, TwinSource
    except ImportError:
        raise SourceUnavailable("the digital twin (simulator.twin) is not available in this build") from None
    tw = settings.twin
    config = TwinConfig(nodes=tw.nodes, gpus_per_node=tw.gpus_per_node, seed=tw.seed, inventory=tw.inventory,
                        failures=tw.failures)
    config.validate()
    return TwinSource(config, speed=tw.speed)


def list_devices(source: str, settings: Settings) -> list[Device]:
    """Open a source, read its inventory, close it (auto: every NVIDIA and AMD GPU of this node)."""
    src: Source
    if source in ("auto", "nvml", "amd"):
        from gpufleet.exporter.sources.auto import open_source

        src = open_source(source, collectors=[], node=settings.exporter.node_name,
                          proc_root=settings.exporter.proc_root)
    elif source == "twin":
        src = _twin_source(settings)
    else:
        raise ConfigError(f"--source must be auto, nvml, amd or twin, got {source!r}")
    with src:
        return src.devices()


def _as_dict(d: Device) -> dict[str, Any]:
    out = {k: getattr(d, k) for k in Device.__slots__ if not k.startswith("_")}
    return {k: v for k, v in out.items() if v is not None}


def devices(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of one line per GPU."),
    source: str | None = typer.Option(None, "--source", "-s", help="auto (every NVIDIA and AMD GPU of this machine; "
                                      "the default from settings), nvml, amd, or twin (simulated)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
) -> None:
    """List the GPUs, like `nvidia-smi -L`, with vendor, UUID, model, memory and driver (MIG instances
    indented). `--source auto` lists NVIDIA and AMD GPUs together.

    With neither an NVIDIA nor an AMD driver it says so in one line; `--source twin` lists the simulated
    fleet instead.

    Example: gpufleet devices --json
    """
    settings = load_settings(config)
    source = source or settings.exporter.source
    devs = list_devices(source, settings)
    if as_json:
        typer.echo(json.dumps([_as_dict(d) for d in devs], indent=2))
        return
    if not devs:
        typer.echo("no GPUs found")
        return
    width = max(len(d.vendor) for d in devs)
    for d in devs:
        vendor = d.vendor.ljust(width)  # the vendor column
        if d.is_mig:
            typer.echo(f"{' ' * width}   MIG {d.mig_profile or '?'} Device (GI {d.mig_gi_id}, CI {d.mig_ci_id}) "
                       f"(UUID: {d.uuid}) memory {_gib(d.memory_total_bytes)}")
        else:
            node = f" node {d.node}" if source == "twin" else ""
            virt = f" ({d.virtualization})" if d.virtualization not in (None, "baremetal") else ""
            typer.echo(f"{vendor} GPU {d.index}: {d.model} (UUID: {d.uuid}) memory {_gib(d.memory_total_bytes)} "
                       f"driver {d.driver_version or '?'}{virt}{node}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("devices")(devices)
