"""Walk every route with every role (and no token) and check the permission matrix is enforced.

A new route without a rule makes create_app() fail, and a rule that is not enforced fails here.
"""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI

from gpufleet.api.app import api_routes, create_app
from gpufleet.api.permissions import MATRIX
from gpufleet.integrations import k8s_extender, power, remediation_api
from tests.api.conftest import Api

USERS = {"admin": "root", "developer": "dev", "auditor": "aud"}


REMEDIATION = [(remediation_api.remediation_router(lambda: []), remediation_api.PERMISSIONS)]


def _app(api: Api) -> FastAPI:
    """The API as `serve` mounts it: the core routes plus the cluster-manager remediation routes."""
    return create_app(api.ctx, extra=REMEDIATION)


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = sorted(api_routes(app))
    assert len(routes) > 25
    return routes


def test_every_route_has_a_rule_and_every_rule_a_route(api: Api) -> None:
    app = _app(api)
    routes = set(_routes(app))
    routes.add(("GET", "/metrics"))  # served when the service passes an exposition
    assert routes == set(MATRIX) | set(remediation_api.PERMISSIONS) == set(app.state.matrix)
    assert ("GET", "/integrations/remediation") in routes


def _doc_matrix() -> dict[tuple[str, str], frozenset[str]]:
    """The table in docs/security.md: `METHOD /path` cells (a bare `/path` takes the cell's last method)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    table = doc.split("| route | admin | developer | auditor | no token |", 1)[1].split("\n\n", 1)[0]
    out: dict[tuple[str, str], frozenset[str]] = {}
    for line in table.strip().splitlines()[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        routes, marks = cells[0], cells[1:]
        public = bool(marks[3])
        roles = frozenset() if public else frozenset(r for r, m in zip(("admin", "developer", "auditor"), marks[:3], strict=True) if m)
        method = ""
        for tok in re.findall(r"`([^`]+)`", routes):
            if " " in tok:
                method, tok = tok.split(" ", 1)
            out[(method, tok)] = roles
    return out


def test_the_documented_matrix_is_the_codes() -> None:
    """docs/security.md lists every route (remediation, power, extender included) with the roles the code allows."""
    code = {**MATRIX, **remediation_api.PERMISSIONS, **power.PERMISSIONS, **k8s_extender.PERMISSIONS}
    doc = _doc_matrix()
    assert set(doc) == set(code), (sorted(set(code) - set(doc)), sorted(set(doc) - set(code)))
    wrong = {k: (sorted(doc[k]), sorted(code[k])) for k in code if doc[k] != code[k]}
    assert not wrong, wrong


def test_app_refuses_a_route_without_a_rule(api: Api) -> None:
    from fastapi import APIRouter

    from gpufleet.api import app as app_module

    extra = APIRouter()

    @extra.get("/secret-new-thing")
    def _new() -> dict[str, str]:
        return {}

    old = app_module.ROUTERS
    app_module.ROUTERS = (*old, extra)
    try:
        with pytest.raises(RuntimeError, match="secret-new-thing"):
            create_app(api.ctx)
    finally:
        app_module.ROUTERS = old


def test_matrix_is_enforced_for_every_route_and_role(api: Api) -> None:
    from fastapi.testclient import TestClient

    app = _app(api)
    client = TestClient(app)
    checked = 0
    for method, path in _routes(app):
        allowed = app.state.matrix[(method, path)]
        url = re.sub(r"\{[^}]+\}", lambda m: {"{uuid}": "GPU-0-0", "{user_id}": "999"}.get(m.group(0), "x1"), path)
        for role in (None, "admin", "developer", "auditor"):
            headers = api.headers(USERS[role]) if role else {}
            r = client.request(method, url, headers=headers, json={})
            where = f"{method} {path} as {role or 'anonymous'} -> {r.status_code} {r.text[:120]}"
            if not allowed:
                assert r.status_code not in (401, 403), where
            elif role is None:
                assert r.status_code == 401, where
            elif role in allowed:
                assert r.status_code not in (401, 403), where
            else:
                assert r.status_code == 403, where
            checked += 1
    assert checked >= 4 * 30
