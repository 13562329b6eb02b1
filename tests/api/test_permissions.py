"""Walk every route with every role (and no token) and check the permission matrix is enforced.

A new route without a rule makes create_app() fail, and a rule that is not enforced fails here.
"""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI

from gpufleet.api.app import api_routes, create_app
from gpufleet.api.permissions import MATRIX
from tests.api.conftest import Api

USERS = {"admin": "root", "developer": "dev", "auditor": "aud"}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = sorted(api_routes(app))
    assert len(routes) > 25
    return routes


def test_every_route_has_a_rule_and_every_rule_a_route(api: Api) -> None:
    routes = set(_routes(create_app(api.ctx)))
    routes.add(("GET", "/metrics"))  # served when the service passes an exposition
    assert routes == set(MATRIX)


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
    app = create_app(api.ctx)
    checked = 0
    for method, path in _routes(app):
        allowed = MATRIX[(method, path)]
        url = re.sub(r"\{[^}]+\}", lambda m: {"{uuid}": "GPU-0-0", "{user_id}": "999"}.get(m.group(0), "x1"), path)
        for role in (None, "admin", "developer", "auditor"):
            headers = api.headers(USERS[role]) if role else {}
            r = api.client.request(method, url, headers=headers, json={})
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
