"""CLI: `gpufleet audit verify|search` over the service's audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from gpufleet.cli.common import parse_time

audit_app = typer.Typer(help="Verify, search and export the tamper-evident audit log.", no_args_is_help=True)

DataDir = typer.Option(None, "--data-dir", "-d", help="The service's data folder (default from settings).")
Config = typer.Option(None, "--config", "-c", help="TOML settings file.")


def _log(data_dir: Path | None, config: Path | None, *, anchored: bool = False):  # type: ignore[no-untyped-def]
    """The audit log of the service's database; ``anchored`` also loads its key and checkpoint file (both
    must exist: a verification without the key could not tell a re-hashed chain from a good one)."""
    from gpufleet.api.audit import AuditLog
    from gpufleet.api.context import audit_anchor, database_url
    from gpufleet.api.db import Database
    from gpufleet.settings import load_settings

    settings = load_settings(config, {"data_dir": data_dir})
    db = Database(database_url(settings.api, settings.data_dir))
    db.create_all()
    anchor = audit_anchor(settings.api, settings.data_dir, db, create=False) if anchored else None
    return AuditLog(db, anchor)


@audit_app.command("verify")
def verify(data_dir: Path | None = DataDir, config: Path | None = Config) -> None:
    """Check the audit log: the hash chain, every record's HMAC with the audit key, and every signed
    checkpoint (a head below the last checkpoint means the newest records were deleted). Lists every
    problem found; exits 1 when the log is not intact.

    Example: gpufleet audit verify --data-dir /var/lib/gpufleet
    """
    result = _log(data_dir, config, anchored=True).verify()
    cps = (f"{result.checkpoints} signed checkpoints, the last at record {result.last_checkpoint_seq}"
           if result.checkpoints else "no signed checkpoints")
    if result.ok:
        typer.echo(f"audit log intact: {result.records} records, chain and HMACs verified, {cps}")
        return
    typer.secho(f"audit log BROKEN: {len(result.problems)} problem(s); {result.records} records "
                f"(head at record {result.head_seq}), {cps}", fg=typer.colors.RED, err=True)
    for p in result.problems:
        typer.secho(f"  - {p}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@audit_app.command("rotate-key")
def rotate_key(data_dir: Path | None = DataDir, config: Path | None = Config) -> None:
    """Replace the audit key: the log must verify first; the old key moves to
    secrets/audit-keys-retired/<id>.key (keep it: older records verify with it) and a checkpoint signed
    with the new key marks the switch. Stop `gpufleet serve` first and start it again after.

    Example: gpufleet audit rotate-key --data-dir /var/lib/gpufleet
    """
    from gpufleet.api.audit import AuditKeyring

    log = _log(data_dir, config, anchored=True)
    result = log.verify()
    if not result.ok:
        typer.secho("refusing to rotate the audit key: the log does not verify (run `gpufleet audit verify`)",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    assert log.anchor is not None
    key_file = _key_file(data_dir, config)
    log.anchor.keyring, old_id = AuditKeyring.rotate(key_file)
    cp = log.checkpoint(kind="rotate", force=True)
    typer.echo(f"audit key rotated: {old_id} retired, {log.anchor.keyring.current_id} signs from record "
               f"{cp.seq if cp else '?'} on ({key_file})")


def _key_file(data_dir: Path | None, config: Path | None) -> Path:
    from gpufleet.api.context import audit_key_path
    from gpufleet.settings import load_settings

    settings = load_settings(config, {"data_dir": data_dir})
    return audit_key_path(settings.api, settings.data_dir)


@audit_app.command("search")
def search(
    since: str | None = typer.Option(None, help="From (unix seconds, ISO 8601, or an age like 6h)."),
    until: str | None = typer.Option(None, help="Until (exclusive; same formats)."),
    user: str | None = typer.Option(None, help="Exactly this user."),
    action: str | None = typer.Option(None, help="Action type (login, job, gpu, user...) or exact action (job.cancel)."),
    target: str | None = typer.Option(None, help="Target contains this text."),
    limit: int = typer.Option(100, help="At most this many records."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    data_dir: Path | None = DataDir,
    config: Path | None = Config,
) -> None:
    """Search the audit log by time range, user, action type and target.

    Example: gpufleet audit search --since 24h --action login --format csv > logins.csv
    """
    log = _log(data_dir, config)
    rows, total = log.search(since=parse_time(since, "--since"), until=parse_time(until, "--until"), user=user, action=action, target=target,
                             limit=limit)
    if fmt == "csv":
        typer.echo(log.export_csv(rows), nl=False)
    elif fmt == "json":
        for r in rows:
            typer.echo(json.dumps({"seq": r.seq, "ts": r.ts, "user": r.user, "role": r.role, "action": r.action,
                                   "target": r.target, "outcome": r.outcome, "source": r.source, "detail": r.detail}))
    else:
        for r in rows:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.ts))
            typer.echo(f"{r.seq:>6} {stamp} {r.user:<12} {r.role:<9} {r.action:<18} {r.outcome:<8} {r.source:<15} {r.target}")
        typer.echo(f"{len(rows)} of {total} matching records", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
