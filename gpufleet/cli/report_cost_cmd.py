"""CLI: `gpufleet report cost`: the monthly GPU cost table by team, user and GPU type."""

from __future__ import annotations

import html
import json
from pathlib import Path

import typer


def cost(
    out: Path = typer.Option(..., "--out", help="Folder for cost.md, cost.html, cost_monthly.csv, cost.json."),
    state_file: Path | None = typer.Option(None, "--state", help="Queue state file with the usage log "
                                           "(default: the allocator's queue file from settings)."),
    prices: Path | None = typer.Option(None, "--prices", help="Price book YAML (default: the shipped one)."),
    basis: str | None = typer.Option(None, "--basis", help="on_demand, spot or a reserved option."),
    default_price: float | None = typer.Option(None, "--default-price",
                                               help="Price per GPU-hour for GPU types missing from the book."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
) -> None:
    """Write the monthly cost table: GPU-hours and cost by month, team, user and GPU type, plus totals by
    team, user and job, priced with the planner's price book.

    Example: gpufleet report cost --out reports/ --default-price 2.0
    """
    from gpufleet.allocator.cost import attribute, monthly, prices_from_book, write_monthly_csv
    from gpufleet.allocator.queue import Usage
    from gpufleet.exporter.errors import InputError
    from gpufleet.settings import load_settings

    st = load_settings(config)
    path = state_file or st.allocator.queue_path or (st.data_dir / "allocator" / "queue.json")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no queue state yet (submit jobs first)", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
    usage = [Usage(**(u | {"uuids": tuple(u.get("uuids", ()))})) for u in data.get("usage", [])]
    book = prices_from_book(prices, basis or st.allocator.price_basis, default_price)
    rows = monthly(usage, book)
    out.mkdir(parents=True, exist_ok=True)
    write_monthly_csv(rows, out / "cost_monthly.csv", book.currency)
    totals = {by: attribute(usage, book, by) for by in ("team", "user", "job")}
    cur = book.currency
    md = [f"# GPU cost by month ({cur}, {basis or st.allocator.price_basis} prices)", "",
          f"| month | team | user | GPU type | GPU-hours | cost ({cur}) |", "|---|---|---|---|---:|---:|"]
    md += [f"| {r.month} | {r.team} | {r.user} | {r.gpu_type} | {r.gpu_hours:.1f} | {r.cost:.2f} |" for r in rows]
    for by, trs in totals.items():
        md += ["", f"## Total by {by}", "", f"| {by} | GPU-hours | cost ({cur}) |", "|---|---:|---:|"]
        md += [f"| {r.key} | {r.gpu_hours:.1f} | {r.cost:.2f} |" for r in trs]
    (out / "cost.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    cells = "".join(f"<tr><td>{html.escape(r.month)}</td><td>{html.escape(r.team)}</td><td>{html.escape(r.user)}"
                    f"</td><td>{html.escape(r.gpu_type)}</td><td>{r.gpu_hours:.1f}</td><td>{r.cost:.2f}</td></tr>"
                    for r in rows)
    (out / "cost.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>GPU cost</title><h1>GPU cost by month ({cur})</h1>"
        f"<table><tr><th>month</th><th>team</th><th>user</th><th>GPU type</th><th>GPU-hours</th><th>cost</th>"
        f"</tr>{cells}</table>", encoding="utf-8")
    (out / "cost.json").write_text(json.dumps({
        "currency": cur, "monthly": [r.__dict__ for r in rows],
        "totals": {by: [r.__dict__ for r in trs] for by, trs in totals.items()}}, indent=1), encoding="utf-8")
    typer.echo(f"wrote {out / 'cost.md'}, cost.html, cost_monthly.csv, cost.json ({len(rows)} rows)")


def register(report_app: typer.Typer) -> None:
    """Add this module's commands to the report group."""
    report_app.command("cost")(cost)
