"""CLI: `gpufleet twin` commands: generate history (and failure labels) from the digital twin."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from gpufleet.exporter.errors import ConfigError

twin_app = typer.Typer(name="twin", help="The digital twin: a simulated GPU fleet (no GPU needed).",
                       no_args_is_help=True)


def _aliases(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        if "=" not in v:
            raise ConfigError(f"--alias takes TRACE_NAME=KNOWN_MODEL, got {v!r}")
        k, m = v.split("=", 1)
        out[k.strip()] = m.strip()
    return out


@twin_app.command("run")
def run(
    out: Path = typer.Option(..., "--out", help="History store folder to write (created if missing)."),
    nodes: int = typer.Option(4, "--nodes", min=1, help="Nodes of the built-in fleet (ignored with --inventory)."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", min=1, max=16, help="GPUs per built-in node."),
    days: float = typer.Option(1.0, "--days", min=0.0, help="Simulated days to generate."),
    seed: int = typer.Option(7, "--seed", help="Random seed (same seed, same history)."),
    step: float = typer.Option(60.0, "--step", min=1.0, help="Seconds between samples."),
    inventory: Path | None = typer.Option(None, "--inventory", help="Node list: openb or spot-GPU CSV format."),
    alias: list[str] = typer.Option([], "--alias", help="Map a trace model code to a known model: G2=A10."),
    no_failures: bool = typer.Option(False, "--no-failures", help="Simulate a fleet that never fails."),
    failure_rate: float = typer.Option(1.0, "--failure-rate", min=0.0,
                                       help="Multiply the calibrated failure rates (more labels)."),
    workload: str = typer.Option("synthetic", "--workload", help="synthetic, openb (pod list) or genai (trace folder)."),
    workload_path: Path | None = typer.Option(None, "--workload-path", help="openb pod list CSV or GenAI trace folder."),
    fields: str = typer.Option("history", "--fields", help="history (core fields) or full (every supported field)."),
    start: float | None = typer.Option(None, "--start", help="Unix time of the first sample (default: now - days)."),
) -> None:
    """Simulate a fleet and write its telemetry history and ground-truth failure labels to a store.

    Telemetry goes into the history store like the exporter's; failure labels are written apart
    (never as metrics). Prints the samples and labels written and the time it took.

    Example: gpufleet twin run --nodes 16 --days 14 --seed 7 --out ./twin-history
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from gpufleet.exporter.store import HistoryStore
    from gpufleet.simulator.twin import Twin, TwinConfig

    config = TwinConfig(nodes=nodes, gpus_per_node=gpus_per_node, seed=seed, inventory=inventory,
                        aliases=_aliases(alias), failures=not no_failures, workload=workload,
                        workload_path=workload_path, failure_rate_multiplier=failure_rate, step_s=step,
                        fields=fields, job_events=True)
    twin = Twin(config)
    duration = days * 86400.0
    t0 = float(int(time.time() - duration) // 60 * 60) if start is None else start
    n_steps = int(duration // step)
    n_nodes = len(twin.nodes)
    began, cpu0 = time.perf_counter(), time.process_time()
    n_samples = 0
    store = HistoryStore(out, raw_retention_days=max(14.0, days + 1.0), fsync=False)
    try:
        with Progress(TextColumn("[bold]twin[/bold] {task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                      TimeRemainingColumn()) as progress:
            task = progress.add_task(f"{n_nodes} nodes x {twin.n // max(n_nodes, 1)} GPUs", total=n_steps)
            for i, snap in enumerate(twin.run(t0, n_steps * step, step)):
                store.write(snap)
                n_samples += len(snap.samples)
                if i % n_nodes == n_nodes - 1:
                    progress.advance(task)
        store.write_labels(twin.labels)
    finally:
        store.close()
    took, cpu = time.perf_counter() - began, time.process_time() - cpu0
    modes: dict[str, int] = {}
    for lab in twin.labels:
        m = str(lab.detail.get("mode"))
        modes[m] = modes.get(m, 0) + 1
    typer.echo(f"wrote {n_samples:,} samples from {twin.n} GPUs over {days:g} days ({n_steps:,} steps) to {out}")
    typer.echo(f"failure labels: {len(twin.labels)} " + (str(modes) if modes else "") + f"; jobs: {len(twin.jobs):,}")
    if not twin.labels and not no_failures:
        typer.echo("no hardware failure at the calibrated rate (~5 % per GPU-year); use --failure-rate 100 "
                   "or more to generate training labels")
    typer.echo(f"took {took:.1f} s wall, {cpu:.1f} s CPU ({n_samples / max(took, 1e-9):,.0f} samples/s)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(twin_app)
