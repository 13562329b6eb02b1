"""Every command's ``--help`` works and explains itself with an example."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gpufleet.cli import app


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) for every leaf command; typer vendors its own click, so groups are duck-typed."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for name, cmd in sorted(group.commands.items()):
        path = (*prefix, name)
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, path))
        else:
            out.append((path, cmd))
    return out


ROOT = typer.main.get_command(app)
COMMANDS = _commands(ROOT)


def test_the_tree_has_the_main_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in ("demo", "serve", "exporter", "failure evaluate", "forecast backtest", "allocator replay",
                     "report capacity", "report cost"):
        assert expected in names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_runs_and_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    cmd = dict(COMMANDS)[path]
    assert cmd.help and "Example" in cmd.help, f"{' '.join(path)}: no Example line in its docstring"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_lists_show_one_line_summaries(path: tuple[str, ...]) -> None:
    cmd = dict(COMMANDS)[path]
    assert cmd.short_help is not None and "\n" not in cmd.short_help
