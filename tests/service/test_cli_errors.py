"""A user's mistake gets one clear line and the documented exit code, never a traceback (issue #17, 14-16).

The whole command tree is driven in-process through the console script's own entry (``gpufleet.cli.main``)
for a bad flag, a bad value and a missing required value of every command; a sample of the same cases and
the commands' own failure exit codes run the installed console script in subprocesses, two at a time.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import types
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gpufleet.cli import main
from tests.allocator.test_replay import NODES
from tests.servers import free_port
from tests.service.test_cli_help import COMMANDS

GPUFLEET = Path(sys.executable).with_name("gpufleet")
BAD_FLAG = "--no-such-flag"


def _run_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_error_line(code: int, err: str, *needles: str, expected: int = 2) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert "error:" in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    assert code == expected, (code, err)


def _scalar(annotation: Any) -> Any:
    """int for ``int | None``, ``list[int]``...; the annotation itself otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
        return _scalar(args[0]) if len(args) == 1 else annotation
    return annotation


def _is_number(param: Any) -> bool:
    return _scalar(param.type_descriptor.annotation) in (int, float)


def _dummy(param: Any) -> str:
    return "1" if _is_number(param) else "x"


def _required_args(cmd: Any, but: Any = None) -> list[str]:
    """Well-typed placeholder values for every required parameter (except ``but``)."""
    out: list[str] = []
    for p in cmd.params:
        if p is but or not p.required:
            continue
        out.extend([_dummy(p)] if p.param_type_name == "argument" else [p.opts[0], _dummy(p)])
    return out


def _options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if p.param_type_name == "option" and not getattr(p, "is_flag", False)]


LEAVES = [(path, cmd) for path, cmd in COMMANDS]
IDS = [" ".join(path) for path, _ in LEAVES]
TYPED = [(path, cmd, p) for path, cmd in LEAVES for p in _options(cmd) if _is_number(p)]
RANGED = [(path, cmd, p) for path, cmd in LEAVES for p in _options(cmd) if _is_number(p) and p.min is not None]
REQUIRED = [(path, cmd, p) for path, cmd in LEAVES for p in cmd.params if p.required]


def test_the_tree_has_cases_of_every_kind() -> None:
    assert len(LEAVES) >= 30
    assert len(TYPED) >= 20 and len(RANGED) >= 5 and len(REQUIRED) >= 15


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=IDS)
def test_bad_flag(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run_in_process([*path, BAD_FLAG], capsys)
    _assert_one_error_line(code, err, f"No such option: {BAD_FLAG}", f"gpufleet {' '.join(path)}")


@pytest.mark.parametrize(("path", "cmd", "param"), TYPED, ids=[f"{' '.join(p)} {o.opts[0]}" for p, _, o in TYPED])
def test_bad_value(path: tuple[str, ...], cmd: Any, param: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run_in_process([*path, *_required_args(cmd), param.opts[0], "not-a-number"], capsys)
    _assert_one_error_line(code, err, f"Invalid value for '{param.opts[0]}'")


@pytest.mark.parametrize(("path", "cmd", "param"), RANGED, ids=[f"{' '.join(p)} {o.opts[0]}" for p, _, o in RANGED])
def test_out_of_range_value(path: tuple[str, ...], cmd: Any, param: Any, capsys: pytest.CaptureFixture[str]) -> None:
    below = str(param.min - 1)
    code, _out, err = _run_in_process([*path, *_required_args(cmd), param.opts[0], below], capsys)
    _assert_one_error_line(code, err, f"Invalid value for '{param.opts[0]}'", "greater than or equal")


@pytest.mark.parametrize(("path", "cmd", "param"), REQUIRED,
                         ids=[f"{' '.join(p)} {o.opts[0]}" for p, _, o in REQUIRED])
def test_missing_required(path: tuple[str, ...], cmd: Any, param: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run_in_process([*path, *_required_args(cmd, but=param)], capsys)
    name = param.opts[0] if param.param_type_name == "option" else param.name
    _assert_one_error_line(code, err, f"Missing {param.param_type_name} '{name}'")


def test_a_group_without_a_command_shows_its_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_in_process(["audit"], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert "verify" in out + err and "Usage:" in out + err


def test_root_commands_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = _run_in_process(["--version"], capsys)
    assert code == 0 and out.startswith("gpufleet ")


# -- the installed console script, in subprocesses ---------------------------------------------------------
def _script(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GPUFLEET), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUFLEET_", "GRAFANA_"))}
    env.update({"GPUFLEET_DATA_DIR": str(tmp_path / "data"), "GPUFLEET_ALERTING__RETRIES": "1",
                "GPUFLEET_ALERTING__BACKOFF": "0", "NO_COLOR": "1"})
    return env


def _audit_chain(tmp_path: Path, env: dict[str, str]) -> list[tuple[subprocess.CompletedProcess[str], int, str]]:
    """init, verify (intact: 0), change one stored record, verify again (BROKEN: 1)."""
    (tmp_path / "pw").write_text("a-long-admin-password-1234\n")
    data = tmp_path / "audit-data"
    init = _script(["init", "-d", str(data), "--admin-password-file", str(tmp_path / "pw")], tmp_path, env)
    assert init.returncode == 0, init.stderr
    intact = _script(["audit", "verify", "-d", str(data)], tmp_path, env)
    with sqlite3.connect(data / "gpufleet.db") as db:
        db.execute("UPDATE audit_log SET target = 'someone-else'")
    broken = _script(["audit", "verify", "-d", str(data)], tmp_path, env)
    return [(intact, 0, "intact"), (broken, 1, "BROKEN")]


def test_console_script_exit_codes(tmp_path: Path) -> None:
    """Usage errors exit 2, typed errors their class's code, a command's own failure its code (item 14)."""
    env = _env(tmp_path)
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "prio10.yaml").write_text("- {name: big, gpus: 1, priority: 10}\n")
    (tmp_path / "rejected.yaml").write_text("- {name: fine, gpus: 1}\n- {name: nowhere, gpus: 1, gpu_types: [H100]}\n")
    (tmp_path / "folder").mkdir()
    closed = free_port()
    nodes = ["--nodes", "nodes.csv"]
    cases: list[tuple[list[str], int, str]] = [
        (["devices", BAD_FLAG], 2, f"No such option: {BAD_FLAG}"),
        (["demo", "--nodes", "abc"], 2, "Invalid value for '--nodes'"),
        (["twin", "run", "--out", "x", "--days", "-1"], 2, "greater than or equal to 0"),
        (["history", "info"], 2, "Missing option '--store'"),
        # item 16: validated at the edge, one line each
        (["dashboards", "push", "--token", "t"], 2, "Missing option '--grafana-url'"),
        (["exporter", "--source", "twin", "--listen", "127.0.0.1:99999", "--duration", "1"], 2,
         "exporter.listen: Value error, must be HOST:PORT with a port from 0 to 65535, got '127.0.0.1:99999'"),
        (["allocator", "submit", "prio10.yaml", *nodes, "--state", "q1.json"], 3,
         "prio10.yaml: job big: priority must be one of 0 (batch), 1 (normal), 2 (high), 3 (critical), got 10"),
        (["config", "show", "--config", "folder"], 2, "cannot read config file folder"),
        (["init", "-d", "nodes.csv"], 2, "nodes.csv exists and is not a folder"),
        # typed errors and the commands' own failures
        (["dashboards", "push", "--grafana-url", f"http://127.0.0.1:{closed}", "--token", "t"], 5, "unreachable"),
        (["alerting", "silence", "expire", "no-such-silence"], 1, "no silence with id"),
        (["allocator", "submit", "rejected.yaml", *nodes, "--state", "q2.json"], 3, "rejected nowhere"),
        (["alerting", "test-notify", "--url", f"json://127.0.0.1:{closed}/alerts"], 1, "cli: FAILED"),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        audit = pool.submit(_audit_chain, tmp_path, env)
        results = list(pool.map(lambda c: (_script(c[0], tmp_path, env), c[1], c[2]), cases))
        results += audit.result()
    for proc, expected, needle in results:
        shown = f"{proc.args[1:]}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, shown
        assert proc.returncode == expected, shown
        assert needle in proc.stdout + proc.stderr, shown
        if expected == 2 or "error:" in proc.stderr:
            assert len([ln for ln in proc.stderr.splitlines() if "error:" in ln]) == 1, shown


def test_jobs_file_fields_are_checked_at_the_edge(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every wrong job field is one line naming the file, the job and the field (exit 3), nothing queued."""
    monkeypatch.setenv("GPUFLEET_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "nodes.csv").write_text(NODES)
    cases = {
        "- {name: a, priority: 1.5}": "job a: priority must be one of",
        "- {name: a, priority: urgent}": "job a: priority must be one of",
        "- {name: a, priority: true}": "job a: priority must be one of",
        "- {name: a, gpus: two}": "job a: gpus: Input should be a valid integer",
        "- {name: a, depends_on: b}": "job a: depends_on: Input should be a valid tuple",
        "- {name: a, preemptible: maybe}": "job a: preemptible: Input should be a valid boolean",
        "- 5": "job 1: expected a mapping of fields, got int",
        "- {name: a": "jobs.yaml:2: not valid YAML/JSON: expected ',' or '}'",
    }
    state = tmp_path / "queue.json"
    for text, needle in cases.items():
        (tmp_path / "jobs.yaml").write_text(text + "\n")
        code, _out, err = _run_in_process(["allocator", "submit", str(tmp_path / "jobs.yaml"), "--nodes",
                                           str(tmp_path / "nodes.csv"), "--state", str(state)], capsys)
        _assert_one_error_line(code, err, needle, expected=3)
        assert not state.exists()
    (tmp_path / "jobs.yaml").write_text("- {name: ok, gpus: '1', priority: 2, duration_s: '600'}\n")
    code, out, err = _run_in_process(["allocator", "submit", str(tmp_path / "jobs.yaml"), "--nodes",
                                      str(tmp_path / "nodes.csv"), "--state", str(state)], capsys)
    assert code == 0 and "accepted ok" in out, err


def test_exit_codes_are_documented() -> None:
    """Every code main() maps an error class to is in the docs' table and the root help."""
    from gpufleet.cli import EXIT_CODES, app

    doc = (Path(__file__).parents[2] / "docs" / "development.md").read_text(encoding="utf-8")
    for error, code in EXIT_CODES:
        assert f"| {code} |" in doc and error.__name__ in doc, (error, code)
    epilog = str(app.info.epilog)
    for code in (0, 1, 2, 3, 4, 5, 130):
        assert f"{code} " in epilog
