"""Every API request is logged with its method, path, status and duration (text and JSON fields)."""

from __future__ import annotations

import json
import logging

import pytest

from gpufleet.logs import JsonFormatter
from tests.api.conftest import Api


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gpufleet.api.access"]


def test_requests_logged_with_method_path_status_duration(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gpufleet.api.access"):
        assert api.client.get("/gpus", headers=api.headers("dev")).status_code == 200
        assert api.client.get("/gpus").status_code == 401  # refused: logged too, with its status
        assert api.client.get("/no/such/path?token=secret").status_code == 404
        assert api.client.post("/jobs", json={"name": "x", "gpus": 1}, headers=api.headers("aud")).status_code == 403
    got = [(r.method, r.path, r.status) for r in _access(caplog)]  # type: ignore[attr-defined]
    assert got == [("GET", "/gpus", 200), ("GET", "/gpus", 401), ("GET", "/no/such/path", 404),
                   ("POST", "/jobs", 403)]
    for r in _access(caplog):
        assert isinstance(r.duration_ms, float) and r.duration_ms >= 0  # type: ignore[attr-defined]
        text = r.getMessage()
        assert text.startswith(f"{r.method} {r.path} {r.status} ") and text.endswith(" ms")  # type: ignore[attr-defined]
        assert "secret" not in text  # the query string is never logged
    line = json.loads(JsonFormatter().format(_access(caplog)[0]))
    assert {k: line[k] for k in ("method", "path", "status")} == {"method": "GET", "path": "/gpus", "status": 200}
    assert "duration_ms" in line
