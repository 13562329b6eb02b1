"""Auth (argon2, JWT, refresh rotation, revocation, throttling), users, audit log, problem+json."""

from __future__ import annotations

import os
import stat

from sqlalchemy import update

from gpufleet.api.db import AuditRecord
from tests.api.conftest import PASSWORD, Api


def login(api: Api, user: str, password: str = PASSWORD) -> dict:
    r = api.client.post("/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def test_init_creates_private_key_and_hashed_admin(api: Api) -> None:
    key = api.data_dir / "secrets" / "jwt.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with api.ctx.db.session() as s:
        from gpufleet.api.db import User

        root = s.query(User).filter_by(username="root").one()
        assert root.password_hash.startswith("$argon2id$") and PASSWORD not in root.password_hash


def test_login_refresh_logout_and_password_change(api: Api) -> None:
    tokens = login(api, "dev")
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert api.client.get("/auth/me", headers=h).json()["username"] == "dev"
    # refresh rotates: the old refresh token works once
    new = api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    h2 = {"Authorization": f"Bearer {new['access_token']}"}
    # logout revokes the access token and its refresh token
    assert api.client.post("/auth/logout", json={"refresh_token": new["refresh_token"]}, headers=h2).status_code == 204
    assert api.client.get("/auth/me", headers=h2).status_code == 401
    assert api.client.post("/auth/refresh", json={"refresh_token": new["refresh_token"]}).status_code == 401
    # password change revokes every token the user holds
    t3 = login(api, "dev")
    h3 = {"Authorization": f"Bearer {t3['access_token']}"}
    r = api.client.post("/auth/password", json={"current_password": PASSWORD, "new_password": "another-long-secret"},
                        headers=h3)
    assert r.status_code == 204
    assert api.client.get("/auth/me", headers=h).status_code == 401  # first token too
    assert api.client.get("/auth/me", headers=h3).status_code == 401
    login(api, "dev", "another-long-secret")


def test_bad_tokens_are_401_problems(api: Api) -> None:
    for header in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eDp5"}):
        r = api.client.get("/gpus", headers=header)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 401
    refresh = login(api, "dev")["refresh_token"]
    assert api.client.get("/gpus", headers={"Authorization": f"Bearer {refresh}"}).status_code == 401


def test_login_throttling_after_repeated_failures(api: Api) -> None:
    for _ in range(3):
        assert api.client.post("/auth/login", json={"username": "aud", "password": "wrong"}).status_code == 401
    r = api.client.post("/auth/login", json={"username": "aud", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # another user is not affected
    login(api, "dev")


def test_validation_errors_name_the_field(api: Api) -> None:
    r = api.client.post("/users", json={"username": "x", "password": "short", "role": "admin"},
                        headers=api.headers("root"))
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "password" and r.headers["content-type"].startswith("application/problem+json")


def test_user_management_and_audit_search(api: Api) -> None:
    h = api.headers("root")
    r = api.client.post("/users", json={"username": "newbie", "password": "a-long-password", "role": "developer"},
                        headers=h)
    assert r.status_code == 201
    uid = r.json()["id"]
    assert api.client.post("/users", json={"username": "newbie", "password": "a-long-password",
                                           "role": "developer"}, headers=h).status_code == 409
    assert api.client.patch(f"/users/{uid}", json={"role": "auditor"}, headers=h).json()["role"] == "auditor"
    api.client.post("/auth/login", json={"username": "newbie", "password": "nope-nope"})
    hits = api.client.get("/audit", params={"action": "user"}, headers=api.headers("aud")).json()
    actions = [(i["action"], i["outcome"]) for i in hits["items"]]
    assert ("user.create", "success") in actions and ("user.create", "failure") in actions
    assert ("user.update", "success") in actions
    failed = api.client.get("/audit", params={"action": "login", "user": "newbie"}, headers=h).json()["items"]
    assert [i["outcome"] for i in failed] == ["denied"]
    assert failed[0]["source"]
    csv_text = api.client.get("/audit/export", params={"action": "user"}, headers=h).text
    assert csv_text.splitlines()[0].startswith("seq,time,user,role,action") and "user.update" in csv_text


def test_audit_chain_verifies_and_detects_tampering(api: Api) -> None:
    h = api.headers("root")
    for i in range(3):
        api.client.post("/gpus/GPU-0-1/cordon", json={"reason": f"r{i}"}, headers=h)
    assert api.client.get("/audit/verify", headers=h).json()["ok"] is True
    with api.ctx.db.session() as s:
        seq = s.query(AuditRecord).filter(AuditRecord.action == "gpu.cordoned").order_by(AuditRecord.seq).first().seq
        s.execute(update(AuditRecord).where(AuditRecord.seq == seq).values(user="mallory"))
    result = api.client.get("/audit/verify", headers=h).json()
    assert result["ok"] is False and result["first_broken_seq"] == seq and "changed" in result["reason"]
    # deleting a record is caught at the next one
    with api.ctx.db.session() as s:
        s.execute(update(AuditRecord).where(AuditRecord.seq == seq).values(user="root"))
        s.query(AuditRecord).filter(AuditRecord.seq == seq + 1).delete()
    result = api.client.get("/audit/verify", headers=h).json()
    assert result["ok"] is False and result["first_broken_seq"] == seq + 2


def test_gpus_and_fleet_actions(api: Api) -> None:
    h = api.headers("dev")
    page = api.client.get("/gpus", params={"limit": 3}, headers=h).json()
    assert page["total"] == 8 and len(page["items"]) == 3
    g0 = api.client.get("/gpus/GPU-0-0", headers=h).json()
    assert g0["processes"][0]["pod"] == "train-0" and g0["utilization"] == 0.5
    assert api.client.get("/gpus/GPU-9-9", headers=h).status_code == 404
    r = api.client.post("/gpus/GPU-0-2/drain", json={"reason": "ecc"}, headers=api.headers("root"))
    assert r.json()["state"] == "draining"
    assert api.client.post("/gpus/GPU-0-2/drain", json={}, headers=h).status_code == 403


def test_readiness_and_health(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200


def test_cli_init_and_audit_commands(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from gpufleet.cli import main

    env_dir = tmp_path / "d"
    main(["init", "--data-dir", str(env_dir)])
    out = capsys.readouterr().out
    assert "password (shown once):" in out and "mode 0600" in out
    with pytest.raises(SystemExit) as exc:
        main(["init", "--data-dir", str(env_dir)])
    assert exc.value.code == 2 and "initialised already" in capsys.readouterr().err
    main(["audit", "verify", "--data-dir", str(env_dir)])
    assert "intact: 1 records" in capsys.readouterr().out
    main(["audit", "search", "--data-dir", str(env_dir), "--action", "init", "--format", "csv"])
    assert ",init," in capsys.readouterr().out


def test_configuration_doc_is_current() -> None:
    from pathlib import Path

    from gpufleet.config_doc import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == render(), "regenerate: python -m gpufleet.config_doc > docs/configuration.md"
