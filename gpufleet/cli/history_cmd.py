"""CLI: `gpufleet history` commands: export a history store to CSV / Parquet, describe and check a store."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import typer

from gpufleet.cli.common import parse_time
from gpufleet.exporter.errors import ConfigError, NotFound

history_app = typer.Typer(name="history", help="The embedded history store: export and describe it.",
                          no_args_is_help=True)

DAY = 86400.0


def _open(store: Path) -> Any:
    from gpufleet.exporter.store import HistoryStore

    if not (store / "FORMAT").exists():
        raise NotFound(f"no history store at {store} (write one with `gpufleet twin run --out {store}` "
                       "or the exporter's store sink)")
    return HistoryStore(store, create=False)


@history_app.command("export")
def export(
    store: Path = typer.Option(..., "--store", help="History store folder."),
    since: str | None = typer.Option(None, "--since", help="First time (unix seconds or ISO-8601); default: the start."),
    until: str | None = typer.Option(None, "--until", help="End time, exclusive; default: the end."),
    fields: str | None = typer.Option(None, "--fields", help="Comma-separated field ids; default: every field."),
    uuids: str | None = typer.Option(None, "--uuids", help="Comma-separated GPU uuids; default: all."),
    step: float | None = typer.Option(None, "--step", min=0.001, help="Bucket seconds (aggregate with --agg)."),
    agg: str = typer.Option("mean", "--agg", help="mean, min, max or last (with --step or a rollup tier)."),
    resolution: str = typer.Option("auto", "--resolution", help="raw, 1m, 1h or auto."),
    fmt: str = typer.Option(..., "--format", help="csv or parquet."),
    out: Path | None = typer.Option(None, "--out", help="Output file (CSV may go to stdout; Parquet needs a file)."),
) -> None:
    """Export samples from a history store as one row per (ts, uuid) and one column per series.

    Columns: ts (UTC), uuid, then one column per series (``field`` or ``field{label=value}``);
    an empty cell means the GPU has no value there. Works while a writer is writing.

    Example: gpufleet history export --store ./twin-history --since 2026-01-01 --fields temperature_gpu,power_usage --format parquet --out h.parquet
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet, got {fmt!r}")
    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet needs --out FILE")
    s = _open(store)
    first, last = s.span()
    if first is None or last is None:
        raise NotFound(f"the history store at {store} holds no samples yet")
    lo = parse_time(since, "--since")
    hi = parse_time(until, "--until")
    lo = first if lo is None else lo
    hi = last + 0.001 if hi is None else hi
    if hi <= lo:
        raise ConfigError(f"--until ({until}) must be after --since ({since})")
    known = s.fields()
    wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else sorted({k.split("{")[0] for k in known})
    columns = [k for k in known if k in wanted or k.split("{")[0] in wanted]
    unknown = [f for f in wanted if not any(c == f or c.split("{")[0] == f for c in columns)]
    if unknown and fields:
        raise ConfigError(f"the store has no field {', '.join(unknown)}; it has: {', '.join(known)}")
    uuid_list = [u.strip() for u in uuids.split(",") if u.strip()] if uuids else None
    chunks = max(1, math.ceil((hi - lo) / DAY))
    writer: Any = None
    fh: Any = None
    rows = 0
    try:
        if fmt == "csv":
            fh = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
        with Progress(TextColumn("[bold]export[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} days"),
                      TimeElapsedColumn(), transient=True, disable=out is None) as progress:
            task = progress.add_task("export", total=chunks)
            for i in range(chunks):
                a, b = lo + i * DAY, min(lo + (i + 1) * DAY, hi)
                if step:  # keep buckets whole across chunk edges
                    a = math.floor(a / step) * step if i else a
                r = s.read(wanted, uuids=uuid_list, since=a, until=b, step=step, agg=agg, resolution=resolution)
                progress.advance(task)
                if not len(r):
                    continue
                rows += len(r)
                table = _with_columns(r.to_arrow(), columns)
                if fmt == "csv":
                    _write_csv(table, fh, header=rows == len(r))
                else:
                    import pyarrow.parquet as pq

                    if writer is None:
                        writer = pq.ParquetWriter(out, table.schema, compression="zstd")
                    writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
        if fh is not None and fh is not sys.stdout:
            fh.close()
    if out is not None:
        typer.echo(f"wrote {rows:,} rows x {len(columns)} series to {out}", err=True)


def _with_columns(table: Any, columns: list[str]) -> Any:
    import pyarrow as pa

    cols = [table["ts"], table["uuid"].cast(pa.string())]
    for c in columns:
        cols.append(table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.float64()))
    return pa.table(cols, names=["ts", "uuid", *columns])


def _write_csv(table: Any, fh: Any, header: bool) -> None:
    import csv

    w = csv.writer(fh)
    if header:
        w.writerow(table.column_names)
    ts = [t.isoformat().replace("+00:00", "Z") for t in table["ts"].to_pylist()]
    cols = [table[c].to_pylist() for c in table.column_names[1:]]
    for i, t in enumerate(ts):
        w.writerow([t, *("" if c[i] is None else (repr(c[i]) if isinstance(c[i], float) else c[i]) for c in cols)])


@history_app.command("info")
def info(store: Path = typer.Option(..., "--store", help="History store folder.")) -> None:
    """Describe a history store: span, size, devices, series, tiers, events, labels, open log.

    Example: gpufleet history info --store ./twin-history
    """
    import datetime as dt

    from rich.console import Console
    from rich.table import Table

    from gpufleet.exporter.store.layout import TIERS, list_segments, list_wals

    s = _open(store)
    first, last = s.span()

    def fmt_t(t: float | None) -> str:
        return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    console = Console()
    console.print(f"[bold]{store}[/bold]  {s.size_bytes() / 1e6:,.1f} MB")
    console.print(f"span      {fmt_t(first)} .. {fmt_t(last)}")
    devices = s.devices()
    console.print(f"devices   {len(devices)} on {len({d.node for d in devices})} nodes")
    series = s.fields()
    console.print(f"series    {len(series)} ({len({x.split('{')[0] for x in series})} fields)")
    console.print(f"events    {len(s.events())}   labels {len(s.labels())}   open logs {len(list_wals(store / 'wal'))}")
    t = Table("tier", "segments", "MB", "first", "last")
    for tier in TIERS:
        segs = list_segments(store / tier)
        size = sum(p.path.stat().st_size for p in segs if p.path.exists())
        t.add_row(tier, str(len(segs)), f"{size / 1e6:,.1f}",
                  fmt_t(min((x.tmin for x in segs), default=None) and min(x.tmin for x in segs) / 1000),
                  fmt_t(max((x.tmax for x in segs), default=None) and max(x.tmax for x in segs) / 1000))
    console.print(t)


@history_app.command("check")
def check(
    store: Path = typer.Option(..., "--store", help="History store folder."),
    repair: bool = typer.Option(False, "--repair", help="Quarantine damaged files and recover what logs still hold."),
) -> None:
    """Verify every write-ahead log and segment of a history store; exit 3 when something is damaged.

    Prints one line per damaged file (what is wrong, how many records / rows / bytes are lost).
    With --repair (needs the writer lock: stop the writer first), damaged files are moved to
    STORE/quarantine/, intact records of damaged logs are committed, and segments written before
    digests existed get one.

    Example: gpufleet history check --store ./twin-history --repair
    """
    from gpufleet.exporter.store.check import check_store, repair_store

    if not (store / "FORMAT").exists():
        raise NotFound(f"no history store at {store}")
    rep = repair_store(store) if repair else check_store(store)
    for f in rep.files:
        if not f.ok:
            typer.echo(f"DAMAGED  {f.path}: {f.detail}")
    typer.echo(f"{len(rep.files)} files checked, {len(rep.damaged)} damaged; lost: {rep.records_lost} log records "
               f"({rep.bytes_lost} bytes), {rep.rows_lost} segment rows")
    if rep.damaged:
        typer.echo("repaired: damaged files moved to quarantine/, intact records recovered" if repair
                   else "run with --repair to quarantine damaged files and recover what is intact")
        raise typer.Exit(3)  # a data error (the exit code of InputError)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(history_app)
