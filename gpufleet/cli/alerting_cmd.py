"""CLI: `gpufleet alerting export|check|docs|silence add/list/expire|test-notify`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from gpufleet.exporter.errors import ConfigError, InputError

alerting_app = typer.Typer(help="Alert rules, silences, notification tests and Prometheus export.",
                           no_args_is_help=True)
silence_app = typer.Typer(help="Mute alerts matching labels until an end time.", no_args_is_help=True)
alerting_app.add_typer(silence_app, name="silence")

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML settings file.")


def _settings(config: Path | None):  # type: ignore[no-untyped-def]
    from gpufleet.settings import load_settings

    return load_settings(config)


def _ts(v: float) -> str:
    return datetime.fromtimestamp(v, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@alerting_app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the rule file(s) and alertmanager.yml."),
    names: str = typer.Option("both", "--names", help="Metric naming: native, dcgm or both."),
    webhook_url: str = typer.Option("http://127.0.0.1:9099/alerts", "--webhook-url",
                                    help="Receiver URL written into alertmanager.yml (replace with your receivers)."),
    fmt: str = typer.Option("files", "--format", help="files: Prometheus rule file(s) + alertmanager.yml; "
                            "prometheusrule: one PrometheusRule resource (Prometheus Operator) in prometheusrule.yaml."),
    namespace: str = typer.Option("gpufleet", "--namespace", help="With --format prometheusrule: its namespace."),
    label: list[str] = typer.Option([], "--label", help="With --format prometheusrule: a KEY=VALUE label on the "
                                    "resource (repeat), e.g. release=kube-prometheus-stack."),
    config: Path | None = ConfigOpt,
) -> None:
    """Write a Prometheus rule file equivalent to the rule pack (native and/or dcgm-exporter names) and an
    Alertmanager configuration with the same routing, grouping and inhibition; or, with
    --format prometheusrule, the rules as a PrometheusRule resource for the Prometheus Operator.

    Example: gpufleet alerting export --out deploy/prometheus --names both
    Example: gpufleet alerting export --format prometheusrule --label release=kube-prometheus-stack --out k8s/
    """
    from gpufleet.alerting.export import export, export_prometheus_rule
    from gpufleet.alerting.setup import rules_from

    if names not in ("native", "dcgm", "both"):
        raise ConfigError(f"--names must be native, dcgm or both, got {names!r}")
    if fmt not in ("files", "prometheusrule"):
        raise ConfigError(f"--format must be files or prometheusrule, got {fmt!r}")
    labels = {}
    for item in label:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--label must be KEY=VALUE, got {item!r}")
        labels[key.strip()] = value.strip()
    section = _settings(config).alerting
    if fmt == "prometheusrule":
        for p in export_prometheus_rule(rules_from(section), out, names, namespace=namespace, labels=labels):
            typer.echo(f"wrote {p}")
        return
    paths = export(rules_from(section), out, names, webhook_url=webhook_url, group_by=tuple(section.group_by),
                   group_wait=section.group_wait, group_interval=section.group_interval,
                   repeat_interval=section.repeat_interval)
    for p in paths:
        typer.echo(f"wrote {p}")


@alerting_app.command("check")
def check_cmd(
    files: list[Path] = typer.Argument(None, help="Extra rule files or folders to validate."),
    no_pack: bool = typer.Option(False, "--no-pack", help="Validate only the given files."),
    config: Path | None = ConfigOpt,
) -> None:
    """Validate rule files (and the built-in pack and the configured rule files); errors name the file, the
    line, the rule and what is wrong.

    Example: gpufleet alerting check /etc/gpufleet/rules/
    """
    from rich.console import Console
    from rich.table import Table

    from gpufleet.alerting.rules import load_rules

    section = _settings(config).alerting
    rules = load_rules([*section.rule_files, *(files or [])], include_pack=not no_pack and section.include_pack,
                       overrides=section.overrides)
    table = Table("alert", "severity", "for", "file")
    seen: set[str] = set()
    for r in rules.rules:
        if r.name in seen:
            continue
        seen.add(r.name)
        table.add_row(r.name, r.severity, f"{r.for_s:g}s", f"{Path(r.path).name}:{r.line}")
    Console().print(table)
    typer.echo(f"OK: {len(rules.rules)} rules ({len(seen)} alerts), {len(rules.inhibit)} inhibition rules "
               f"from {len(rules.files)} files")


@alerting_app.command("docs")
def docs_cmd(
    path: Path = typer.Option(Path("docs/alerts.md"), "--path", help="Markdown file with the generated section."),
) -> None:
    """Regenerate the rule reference section of docs/alerts.md from the built-in pack.

    Example: gpufleet alerting docs --path docs/alerts.md
    """
    from gpufleet.alerting.docgen import update_doc
    from gpufleet.alerting.rules import load_rules

    if not path.exists():
        raise InputError("file does not exist", path=str(path))
    changed = update_doc(path, load_rules())
    typer.echo(f"{'updated' if changed else 'already current:'} {path}")


@silence_app.command("add")
def silence_add(
    match: list[str] = typer.Option(..., "--match", "-m", help="label=value, label!=value, label=~regex or label!~regex (regexes anchored; quote a value as label=\"v\"; repeat)."),
    duration: str = typer.Option("2h", "--duration", "-d", help="How long, e.g. 30m, 2h, 1d."),
    comment: str = typer.Option("", "--comment", help="Why (shown in the list)."),
    author: str = typer.Option("", "--author", help="Who."),
    config: Path | None = ConfigOpt,
) -> None:
    """Silence alerts matching every matcher until now + duration (the engine re-reads silences live).

    Example: gpufleet alerting silence add -m node=gpu-07 -m severity!=critical -d 4h --comment "PSU swap"
    """
    from gpufleet.alerting.rules import parse_duration
    from gpufleet.alerting.silences import parse_matcher
    from gpufleet.state.service import db_silences

    settings = _settings(config)
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise ConfigError(f"--duration: {exc}") from None
    now = time.time()
    s = db_silences(settings).add(
        [parse_matcher(m) for m in match], now, now + seconds, created_by=author, comment=comment, now=now)
    typer.echo(f"silence {s.id} until {_ts(s.ends_at)}")


@silence_app.command("list")
def silence_list(
    all_: bool = typer.Option(False, "--all", help="Include expired silences."),
    config: Path | None = ConfigOpt,
) -> None:
    """List silences (active ones unless --all).

    Example: gpufleet alerting silence list --all
    """
    from rich.console import Console
    from rich.table import Table

    from gpufleet.state.service import db_silences

    settings = _settings(config)
    now = time.time()
    table = Table("id", "matchers", "ends", "state", "by", "comment")
    for s in db_silences(settings).all():
        if not all_ and not s.active(now):
            continue
        state = "active" if s.active(now) else ("pending" if s.starts_at > now else "expired")
        table.add_row(s.id, " ".join(str(m) for m in s.matchers), _ts(s.ends_at), state, s.created_by, s.comment)
    Console().print(table)


@silence_app.command("expire")
def silence_expire(
    silence_id: str = typer.Argument(..., help="The silence id (from `silence list`)."),
    config: Path | None = ConfigOpt,
) -> None:
    """End a silence now.

    Example: gpufleet alerting silence expire 3f9a1c2b7d4e
    """
    from gpufleet.state.service import db_silences

    settings = _settings(config)
    s = db_silences(settings).expire(silence_id, time.time())
    typer.echo(f"silence {s.id} expired")


@alerting_app.command("test-notify")
def test_notify(
    url: list[str] = typer.Option(None, "--url", help="Apprise URL to test instead of the configured routes."),
    severity: str = typer.Option("warning", "--severity", help="Severity of the test alert (routes match on it)."),
    config: Path | None = ConfigOpt,
) -> None:
    """Send a sample alert through the configured routes (or --url) and report each channel's result.

    Example: gpufleet alerting test-notify --url "json://127.0.0.1:9099/alerts"
    """
    from gpufleet.alerting.engine import Alert, Notification
    from gpufleet.alerting.notify import Notifier, Route
    from gpufleet.alerting.setup import notifier_from

    section = _settings(config).alerting
    if url:
        notifier = Notifier([Route("cli", list(url))], dashboard_url=section.dashboard_url, retries=section.retries,
                            backoff=section.backoff)
    else:
        if not section.routes:
            raise ConfigError("no alerting routes configured; pass --url or set [[alerting.routes]]")
        notifier = notifier_from(section)
    now = time.time()
    labels = {"alertname": "GpufleetTestNotification", "severity": severity, "scope": "gpu", "node": "test-node",
              "gpu": "0", "uuid": "GPU-00000000-test"}
    alert = Alert("test", "GpufleetTestNotification", labels,
                  {"summary": "Test notification from gpufleet", "remediation": "Nothing to do: this is a test."},
                  "firing", 1.0, 0.0, now, fired_at=now)
    results = notifier.send(Notification("test", {"alertname": labels["alertname"]}, [alert], [], now))
    for channel, ok in results.items():
        typer.secho(f"{channel}: {'delivered' if ok else 'FAILED'}", fg=typer.colors.GREEN if ok else typer.colors.RED)
    if not results:
        raise ConfigError(f"no route matches severity={severity}")
    if not all(results.values()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(alerting_app, name="alerting")
