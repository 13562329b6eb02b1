"""Issue #17 item 10: one explicit silence matcher schema ``{name, op, value}`` (op ``=``, ``!=``, ``=~``,
``!~``, regexes fully anchored, as in Alertmanager) in the API, the CLI and storage; what GET /silences
shows is what the engine applies; older stored silences read the same as before."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpufleet.alerting.setup import build_engine
from gpufleet.alerting.silences import Matcher, SilenceStore, parse_matcher
from gpufleet.exporter.errors import ConfigError

from gpufleet.api.backend import FleetState
from gpufleet.cli import main
from gpufleet.settings import load_settings
from gpufleet.wiring import SilenceAdapter
from tests.api.conftest import Api, make_api

GPU_ALERT = {"alertname": "GpuTemperatureHigh", "node": "gpu-01", "severity": "warning", "uuid": "GPU-1"}


@pytest.fixture
def silence_api(tmp_path: Path) -> Iterator[tuple[Api, Any]]:
    """The API over a real alert engine's silence store (rows as the service keeps them)."""
    settings = load_settings(overrides={"data_dir": str(tmp_path / "engine")})
    engine = build_engine(settings.alerting, settings.data_dir)
    api = make_api(tmp_path, fleet=FleetState(silences=SilenceAdapter(engine)))
    yield api, engine
    api.ctx.db.dispose()
    engine.notify.close()


def _post(api: Api, matchers: Any, **extra: Any) -> Any:
    return api.client.post("/silences", json={"matchers": matchers, "duration_s": 3600, **extra},
                           headers=api.headers("root"))


def test_what_get_shows_is_what_the_engine_applies(silence_api: tuple[Api, Any]) -> None:
    api, engine = silence_api
    # the value "~.*" is a literal: it must not become a match-all regex (the old API's bug)
    r = _post(api, [{"name": "alertname", "op": "=", "value": "~.*"}])
    assert r.status_code == 201, r.text
    assert r.json()["matchers"] == [{"name": "alertname", "op": "=", "value": "~.*"}]
    # a negative matcher is shown as one
    r = _post(api, [{"name": "node", "value": "gpu-01"}, {"name": "severity", "op": "!=", "value": "critical"}])
    assert r.status_code == 201, r.text
    neg_id = r.json()["id"]
    assert r.json()["matchers"] == [{"name": "node", "op": "=", "value": "gpu-01"},
                                    {"name": "severity", "op": "!=", "value": "critical"}]
    listed = {s["id"]: s["matchers"] for s in api.client.get("/silences", headers=api.headers("aud")).json()}
    assert listed[neg_id][1] == {"name": "severity", "op": "!=", "value": "critical"}
    assert {"name": "alertname", "op": "=", "value": "~.*"} in [m for ms in listed.values() for m in ms]
    # the engine applies exactly that: the literal one mutes nothing, the negative one spares criticals
    now = time.time()
    assert engine.silences.silencing(GPU_ALERT, now).id == neg_id
    assert engine.silences.silencing({**GPU_ALERT, "severity": "critical"}, now) is None
    assert engine.silences.silencing({**GPU_ALERT, "node": "gpu-02"}, now) is None


def test_regex_matchers_are_anchored_and_validated(silence_api: tuple[Api, Any]) -> None:
    api, engine = silence_api
    r = _post(api, [{"name": "node", "op": "=~", "value": "gpu-0[12]"}, {"name": "severity", "op": "!~", "value": "crit.*"}])
    assert r.status_code == 201, r.text
    now = time.time()
    assert engine.silences.silencing(GPU_ALERT, now) is not None
    assert engine.silences.silencing({**GPU_ALERT, "node": "gpu-012"}, now) is None  # anchored at the end
    assert engine.silences.silencing({**GPU_ALERT, "node": "xgpu-01"}, now) is None  # ... and at the start
    assert engine.silences.silencing({**GPU_ALERT, "severity": "critical"}, now) is None
    bad = [
        [{"name": "node", "op": "=~", "value": "gpu-(0"}],  # bad regex
        [{"name": "node", "op": "!~", "value": "a)|(.*"}],  # would escape the anchoring group
        [{"name": "node", "op": "~", "value": "x"}],  # unknown op
        [{"name": "bad label", "op": "=", "value": "x"}],
        [{"name": "alertname", "op": "=~", "value": ".*"}],  # mutes every alert: refused as Alertmanager does
        [{"name": "severity", "op": "!=", "value": "none"}],  # matches an alert without the label too
        [{"name": "node", "value": "x", "isRegex": True}],  # a field this API does not know
        {"alertname": "GpuTemperatureHigh"},  # the old dict shape
        [],
    ]
    for matchers in bad:
        r = _post(api, matchers)
        assert r.status_code == 422, (matchers, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), matchers
    assert len(api.client.get("/silences", headers=api.headers("root")).json()) == 1


def test_matcher_text_form_round_trips() -> None:
    cases = {
        "node=gpu-01": Matcher("node", "gpu-01", "="),
        "severity!=none": Matcher("severity", "none", "!="),
        "alertname=~Gpu.*": Matcher("alertname", "Gpu.*", "=~"),
        "node!~gpu-0[12]": Matcher("node", "gpu-0[12]", "!~"),
        'alertname="~.*"': Matcher("alertname", "~.*", "="),  # quoted: a literal value
        'node = "gpu 01"': Matcher("node", "gpu 01", "="),
    }
    for text, want in cases.items():
        got = parse_matcher(text)
        assert got == want, text
        assert parse_matcher(str(got)) == got, str(got)  # what `silence list` prints reads back the same
    for text in ("node", "node~x", "1node=x", "node=~gpu-(0", 'node="unterminated\\"'):
        with pytest.raises(ConfigError):
            parse_matcher(text)


def test_old_format_stored_silences_read_as_before(tmp_path: Path) -> None:
    """Files (and rows) written before the explicit schema hold text matchers; they mean what they did."""
    path = tmp_path / "silences.json"
    path.write_text(json.dumps([{"id": "a1", "matchers": ["node=gpu-01", "severity!=critical", "alertname=~Gpu.*"],
                                 "starts_at": 0.0, "ends_at": 2e9, "created_by": "ops", "comment": "old"}]))
    store = SilenceStore(path)
    s = store.all()[0]
    assert [m.to_dict() for m in s.matchers] == [{"name": "node", "op": "=", "value": "gpu-01"},
                                                 {"name": "severity", "op": "!=", "value": "critical"},
                                                 {"name": "alertname", "op": "=~", "value": "Gpu.*"}]
    assert store.silencing(GPU_ALERT, 1e9) is s
    # the next write stores the explicit schema, nothing lost
    store.add([Matcher("node", "gpu-02")], 0.0, 2e9, now=1e9)
    saved = json.loads(path.read_text())
    assert saved[0]["matchers"][1] == {"name": "severity", "op": "!=", "value": "critical"}
    assert len(saved) == 2 and saved[0]["comment"] == "old"


def test_cli_parses_every_op_into_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_DATA_DIR", str(tmp_path / "data"))

    def run(args: list[str]) -> tuple[int, str]:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out + out.err

    code, out = run(["alerting", "silence", "add", "-m", "node!~gpu-0[12]", "-m", "severity!=none",
                     "-m", "alertname=~Gpu.*", "-m", 'uuid="~x"', "-d", "1h"])
    assert code == 0, out
    from gpufleet.state.service import db_silences

    stored = db_silences(load_settings(overrides={"data_dir": str(tmp_path / "data")})).all()
    assert [m.to_dict() for m in stored[0].matchers] == [
        {"name": "node", "op": "!~", "value": "gpu-0[12]"}, {"name": "severity", "op": "!=", "value": "none"},
        {"name": "alertname", "op": "=~", "value": "Gpu.*"}, {"name": "uuid", "op": "=", "value": "~x"}]
    code, out = run(["alerting", "silence", "add", "-m", "node=~gpu-(0", "-d", "1h"])
    assert code != 0 and "bad regular expression" in out and "Traceback" not in out
    code, out = run(["alerting", "silence", "add", "-m", "alertname=~.*", "-d", "1h"])
    assert code != 0 and "must not match the empty string" in out
