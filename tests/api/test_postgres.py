"""The API's database on a real PostgreSQL server: users, login, audit chain and search."""

from __future__ import annotations

import pytest

from tests.api.conftest import PASSWORD, Api


@pytest.mark.server
def test_api_on_postgresql(pg_api: Api) -> None:
    assert pg_api.ctx.db.engine.dialect.name == "postgresql"
    r = pg_api.client.post("/auth/login", json={"username": "dev", "password": PASSWORD})
    assert r.status_code == 200
    h = pg_api.headers("root")
    for i in range(5):
        assert pg_api.client.post("/gpus/GPU-1-1/cordon", json={"reason": f"r{i}"}, headers=h).status_code == 200
    pg_api.client.post("/auth/login", json={"username": "dev", "password": "wrong-password"})
    found = pg_api.client.get("/audit", params={"action": "gpu"}, headers=h).json()
    assert found["total"] == 5 and {i["target"] for i in found["items"]} == {"GPU-1-1"}
    logins = pg_api.client.get("/audit", params={"action": "login", "user": "dev"}, headers=h).json()["items"]
    assert [i["outcome"] for i in logins] == ["success", "denied"]
    verdict = pg_api.client.get("/audit/verify", headers=h).json()
    assert verdict["ok"] is True and verdict["records"] >= 8
