"""CLI: `gpufleet cluster ...`: what Slurm / Kubernetes see, and one remediation pass by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gpufleet.exporter.errors import ConfigError, InputError
from gpufleet.settings import load_settings

cluster_app = typer.Typer(help="Cluster managers: Slurm and Kubernetes (read-out, risk remediation).",
                          no_args_is_help=True)


def _read_risk(path: Path) -> dict[str, dict[str, float]]:
    """``{uuid: {horizon: p}}`` or a list of ``{"uuid", "horizon", "risk"|"probability"}`` rows."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read risk file: {exc}", path=str(path)) from None
    out: dict[str, dict[str, float]] = {}
    if isinstance(doc, dict):
        for uuid, by_h in doc.items():
            if not isinstance(by_h, dict):
                raise InputError(f"risk of {uuid} must map horizon to probability", path=str(path))
            out[str(uuid)] = {str(h): float(p) for h, p in by_h.items()}
    elif isinstance(doc, list):
        for i, row in enumerate(doc):
            try:
                out.setdefault(str(row["uuid"]), {})[str(row.get("horizon", "24h"))] = float(
                    row["risk"] if "risk" in row else row["probability"])
            except (KeyError, TypeError, ValueError):
                raise InputError("each row needs uuid, horizon and risk", path=str(path), line=i + 1) from None
    else:
        raise InputError("risk file must be a JSON object or list", path=str(path))
    return out


@cluster_app.command("slurm")
def slurm_status(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file ([cluster] section)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show Slurm's GPU nodes (GPUs, in use, state, drain reason), jobs holding GPUs (with GPU indices)
    and the GPUs pending jobs ask for.

    Example: gpufleet cluster slurm --config /etc/gpufleet/gpufleet.toml
    """
    from gpufleet.integrations.build import slurm_client
    from gpufleet.integrations.slurm_mirror import pending_gpus, pending_reason

    client = slurm_client(load_settings(config).cluster)
    nodes, jobs = client.nodes(), client.jobs()
    if as_json:
        typer.echo(json.dumps({
            "nodes": [{"name": n.name, "gpus": n.gpus, "gpus_used": n.gpus_used, "state": n.state,
                       "flags": list(n.flags), "reason": n.reason} for n in nodes],
            "jobs": [{"job_id": j.job_id, "user": j.user, "state": j.state, "gpus": j.gpus,
                      "gpu_indices": {k: list(v) for k, v in j.gpu_indices.items()},
                      "reason": pending_reason(j, nodes)} for j in jobs],
            "pending_gpus": pending_gpus(jobs)}, indent=2))
        return
    con = Console()
    t = Table("node", "GPUs", "in use", "state", "reason", title="Slurm nodes")
    for n in nodes:
        t.add_row(n.name, str(n.gpus), str(n.gpus_used), "+".join((n.state, *n.flags)), n.reason)
    con.print(t)
    jt = Table("job", "user", "state", "GPUs", "where", "reason", title="Slurm jobs")
    for j in jobs:
        where = " ".join(f"{h}:{','.join(map(str, idx))}" for h, idx in j.gpu_indices.items())
        jt.add_row(j.job_id, j.user, j.state, str(j.gpus), where, pending_reason(j, nodes) if j.pending else "")
    con.print(jt)
    con.print(f"pending GPUs: {pending_gpus(jobs):g}")


@cluster_app.command("remediate")
def remediate(
    risk: Path = typer.Option(..., "--risk", help="JSON risk per GPU: {uuid: {horizon: probability}}."),
    manager: str = typer.Option("slurm", "--manager", "-m", help="slurm or kubernetes."),
    apply: bool = typer.Option(False, "--apply", help="Act (drain / taint); without it only report."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file ([cluster] section)."),
) -> None:
    """Run one remediation pass: hold nodes whose GPUs' failure risk crosses the threshold (Slurm drain,
    Kubernetes taint or cordon) and release those whose risk fell, within the share limit. Dry run unless
    --apply. GPUs are matched to nodes by the manager (Slurm: <node>/gpu<index> uuids).

    Example: gpufleet cluster remediate --risk risk.json --manager slurm --apply
    """
    from gpufleet.integrations.build import build_remediators

    settings = load_settings(config).cluster
    if manager not in ("slurm", "kubernetes"):
        raise ConfigError(f"--manager must be slurm or kubernetes, got {manager!r}")
    settings = settings.model_copy(update={"slurm_enabled": manager == "slurm",
                                           "kubernetes_enabled": manager == "kubernetes"})
    [rem] = build_remediators(settings, dry_run=not apply)
    actions = rem.step(_read_risk(risk), now=time.time())
    t = Table("action", "node", "risk", "outcome", "reason", title=f"{manager} remediation"
              + ("" if apply else " (dry run)"))
    for a in actions:
        t.add_row(a.kind, a.node, "" if a.risk is None else f"{a.risk:.2f}", a.outcome, a.reason)
    Console().print(t if actions else "nothing to do")


def register(app: Any) -> None:
    app.add_typer(cluster_app, name="cluster")
