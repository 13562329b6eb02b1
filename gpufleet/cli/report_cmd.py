"""CLI: `gpufleet report ...`: the capacity-planning and cost reports."""

from __future__ import annotations

import typer

report_app = typer.Typer(help="Write reports (capacity plan, cost) as HTML + Markdown + CSV.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from gpufleet.cli import report_capacity_cmd, report_cost_cmd

    report_capacity_cmd.register(report_app)
    report_cost_cmd.register(report_app)
    app.add_typer(report_app, name="report")
