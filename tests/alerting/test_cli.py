"""`gpufleet alerting ...` commands end to end (in-process, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_export_check_and_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_DATA_DIR", str(tmp_path / "data"))
    code, out = _run(["alerting", "export", "--out", str(tmp_path / "out"), "--names", "both"], capsys)
    assert code == 0 and "gpufleet-rules-dcgm.yml" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"gpufleet-rules.yml", "gpufleet-rules-dcgm.yml",
                                                             "alertmanager.yml"}
    code, out = _run(["alerting", "check"], capsys)
    from gpufleet.alerting.rules import load_rules

    pack = load_rules([], include_pack=True)
    alerts = len({r.name for r in pack.rules})  # the pack's rules, XID expanded per code
    assert alerts >= 22 and len(pack.rules) > alerts
    assert code == 0 and f"OK: {len(pack.rules)} rules ({alerts} alerts), {len(pack.inhibit)} inhibition" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: Broken\n    metric: gpufleet_gpu_temperature_celsius\n    threshold: 90\n"
                   "    severity: sometimes\n")
    code, out = _run(["alerting", "check", str(bad)], capsys)
    assert code == 3
    assert f"{bad}:5" in out and "rule 'Broken'" in out and "severity must be one of" in out


def test_silence_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_DATA_DIR", str(tmp_path / "data"))
    code, out = _run(["alerting", "silence", "add", "-m", "node=gpu-07", "-m", "alertname=~Gpu.*", "-d", "2h",
                      "--comment", "PSU swap", "--author", "ops"], capsys)
    assert code == 0
    sid = out.split()[1]
    code, out = _run(["alerting", "silence", "list"], capsys)
    assert sid in out and "active" in out
    code, out = _run(["alerting", "silence", "expire", sid], capsys)
    assert code == 0
    code, out = _run(["alerting", "silence", "list"], capsys)
    assert sid not in out
    code, out = _run(["alerting", "silence", "list", "--all"], capsys)
    assert sid in out and "expired" in out
    # silences are rows in the service's database (gpufleet.state), not a JSON file
    from gpufleet.state import close_state, open_state

    url = f"sqlite:///{(tmp_path / 'data' / 'gpufleet.db').resolve()}"
    saved = open_state(url).silences_backend().load()
    close_state(url)
    assert saved[0]["matchers"] == [{"name": "node", "op": "=", "value": "gpu-07"},
                                    {"name": "alertname", "op": "=~", "value": "Gpu.*"}]
    assert not (tmp_path / "data" / "alerting" / "silences.json").exists()


def test_test_notify_to_outbox(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_DATA_DIR", str(tmp_path / "data"))
    code, out = _run(["alerting", "test-notify", "--url", f"outbox://{tmp_path / 'outbox'}"], capsys)
    assert code == 0 and "cli: delivered" in out
    data = json.loads(next((tmp_path / "outbox").glob("*.json")).read_text())
    assert data["title"] == "[FIRING:1] GpufleetTestNotification on test-node (warning)"
