"""CLI: `gpufleet report cost` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(report_app: typer.Typer) -> None:
    """Add this module's commands to the report group."""
