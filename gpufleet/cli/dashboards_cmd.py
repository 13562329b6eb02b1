"""CLI: `gpufleet dashboards build|push`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

dash_app = typer.Typer(help="Generate Grafana dashboards from the metric catalogue and push them to Grafana.",
                       no_args_is_help=True)


@dash_app.command("build")
def build(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write dashboards/ and datasources/ into."),
    names: str = typer.Option("native", "--names", help="Metric names the exporter serves: native or dcgm."),
    prometheus_url: str = typer.Option("http://localhost:9090", "--prometheus-url",
                                       help="URL written into the provisioned Prometheus datasource."),
    fmt: str = typer.Option("files", "--format", help="files: JSON + provisioning files; configmap: one "
                            "ConfigMap per dashboard labelled for Grafana's sidecar (grafana_dashboard: \"1\")."),
    namespace: str = typer.Option("gpufleet", "--namespace", help="With --format configmap: the namespace."),
) -> None:
    """Write the dashboard JSON files plus Grafana provisioning files (datasource and dashboard provider);
    or, with --format configmap, grafana-dashboards.yaml with one ConfigMap per dashboard for the Grafana
    sidecar of kube-prometheus-stack.

    Copy the result into Grafana's provisioning folder and restart Grafana; nothing else is needed.

    Example: gpufleet dashboards build --out out/grafana && sudo cp -r out/grafana/* /etc/grafana/provisioning/
    Example: gpufleet dashboards build --format configmap --out k8s/
    """
    from gpufleet.dashboards.build import build_all, write_all
    from gpufleet.dashboards.provision import write_configmaps, write_provisioning
    from gpufleet.exporter.errors import ConfigError

    if fmt not in ("files", "configmap"):
        raise ConfigError(f"--format must be files or configmap, got {fmt!r}")
    if fmt == "configmap":
        models = build_all(names)
        typer.echo(str(write_configmaps(out, models, namespace=namespace)))
        typer.echo(f"{len(models)} dashboard ConfigMaps written to {out}")
        return
    paths = write_all(out, names)
    write_provisioning(out, prometheus_url=prometheus_url)
    for p in paths:
        typer.echo(str(p))
    typer.echo(f"{len(paths) - 2} dashboards and 2 provisioning files written to {out}")


@dash_app.command("push")
def push(
    grafana_url: str = typer.Option(..., "--grafana-url", help="Grafana's root URL, e.g. http://grafana:3000."),
    token: str = typer.Option(..., "--token", envvar="GRAFANA_TOKEN",
                              help="Service-account token with the Editor role (or $GRAFANA_TOKEN)."),
    names: str = typer.Option("native", "--names", help="Metric names the exporter serves: native or dcgm."),
    folder: str = typer.Option("gpufleet", "--folder", help="Grafana folder to put the dashboards in."),
    overwrite: bool = typer.Option(True, "--overwrite/--no-overwrite",
                                   help="Replace dashboards changed in Grafana since the last push."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify Grafana's TLS certificate."),
) -> None:
    """Upload every dashboard to Grafana through its HTTP API (folder created if missing).

    Example: gpufleet dashboards push --grafana-url http://grafana:3000 --token $GRAFANA_TOKEN
    """
    from gpufleet.dashboards.build import build_all
    from gpufleet.dashboards.provision import GrafanaClient

    client = GrafanaClient(grafana_url, token, verify=not insecure)
    try:
        folder_uid = client.ensure_folder(folder, uid=f"{folder}-folder"[:40])
        for key, model in build_all(names).items():
            result = client.push(model, folder_uid, overwrite=overwrite)
            typer.echo(json.dumps({"dashboard": key, "uid": result.get("uid"), "url": result.get("url"),
                                   "version": result.get("version")}))
    finally:
        client.close()


def register(app: typer.Typer) -> None:
    app.add_typer(dash_app, name="dashboards")
