"""Issue #17, authentication: identities never reused, logout ends its session, malformed claims are
401, login throttling that parallel attempts cannot beat and nobody can turn against the admin, equal
work for every kind of user, and authentication plus a size limit before any request body is read."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpufleet.api.app import create_app
from gpufleet.api.db import AuditRecord, RefreshToken, User
from gpufleet.api.security import source_key
from gpufleet.api.server import ApiServer
from tests.api.conftest import PASSWORD, Api


def login(client: TestClient, user: str, password: str = PASSWORD) -> dict[str, Any]:
    r = client.post("/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return dict(r.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(r: httpx.Response, where: str) -> None:
    assert r.status_code == 401, f"{where}: {r.status_code} {r.text[:200]}"
    assert r.headers["content-type"].startswith("application/problem+json"), where


# -- 1. identities are never reused ----------------------------------------------------------------------
def _deleted_users_token_never_works_again(api: Api) -> None:
    root = api.headers("root")
    body = {"username": "temp-admin", "password": "a-long-password", "role": "admin"}
    r = api.client.post("/users", json=body, headers=root)
    assert r.status_code == 201, r.text
    old_id = r.json()["id"]  # the highest id: the one SQLite without AUTOINCREMENT hands out again
    old = login(api.client, "temp-admin", "a-long-password")
    assert api.client.get("/auth/me", headers=bearer(old["access_token"])).status_code == 200
    assert api.client.delete(f"/users/{old_id}", headers=root).status_code == 204
    # a new admin, same name: gets a new id, and the deleted user's tokens are nobody's
    r = api.client.post("/users", json=body, headers=root)
    assert r.status_code == 201 and r.json()["id"] > old_id, r.text
    assert_401(api.client.get("/auth/me", headers=bearer(old["access_token"])), "old token, new admin")
    r = api.client.post("/users", json={**body, "username": "mallory"}, headers=bearer(old["access_token"]))
    assert_401(r, "old token creating a user")
    assert_401(api.client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]}), "old refresh")
    # even a row that does get the old id (restored from a backup, edited by hand) is another identity
    with api.ctx.db.session() as s:
        s.delete(s.scalars(select(User).where(User.username == "temp-admin")).one())
    with api.ctx.db.session() as s:
        s.add(User(id=old_id, username="temp-admin", password_hash=api.ctx.auth.hash_password(PASSWORD), role="admin"))
    api.ctx.auth._cache.clear()
    assert_401(api.client.get("/auth/me", headers=bearer(old["access_token"])), "old token, reused id")
    assert login(api.client, "temp-admin")["access_token"]


def test_deleted_users_token_never_works_for_a_new_user_sqlite(api: Api) -> None:
    _deleted_users_token_never_works_again(api)


@pytest.mark.server
def test_deleted_users_token_never_works_for_a_new_user_postgresql(pg_api: Api) -> None:
    assert pg_api.ctx.db.engine.dialect.name == "postgresql"
    _deleted_users_token_never_works_again(pg_api)


def test_an_older_database_gets_nonces_and_sessions(tmp_path: Path) -> None:
    """A users table from before nonces (and without AUTOINCREMENT) is upgraded in place: the users and
    their tokens' rows stay, each user gets a nonce, and a deleted user's id is never handed out again."""
    import sqlite3

    from gpufleet.api.db import Database

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(64) UNIQUE, password_hash VARCHAR(256),"
        " role VARCHAR(16), team VARCHAR(64), disabled BOOLEAN, token_version INTEGER, created_at DATETIME);"
        "CREATE TABLE refresh_tokens (jti VARCHAR(64) PRIMARY KEY,"
        " user_id INTEGER REFERENCES users (id) ON DELETE CASCADE, expires_at DATETIME,"
        " revoked BOOLEAN);"
        "INSERT INTO users VALUES (1, 'old', 'x', 'admin', NULL, 0, 0, '2025-01-01 00:00:00');"
        "INSERT INTO users VALUES (2, 'older', 'x', 'auditor', NULL, 0, 0, '2025-01-01 00:00:00');"
        "INSERT INTO refresh_tokens VALUES ('j1', 1, '2025-01-02 00:00:00', 0);")
    con.commit()
    con.close()
    db = Database(f"sqlite:///{path}")
    db.create_all()
    with db.session() as s:
        nonces = [u.nonce for u in s.scalars(select(User).order_by(User.id))]
    assert len(nonces) == 2 and all(n and len(n) == 32 for n in nonces) and nonces[0] != nonces[1]
    with db.session() as s:
        s.delete(s.get(User, 2))
    with db.session() as s:
        s.add(User(username="new", password_hash="x", role="admin"))
    with db.session() as s:
        assert s.scalars(select(User.id).where(User.username == "new")).one() == 3  # id 2 is not reused
        assert s.get(RefreshToken, "j1") is not None  # rows referring to users survived the rebuild
        s.delete(s.get(User, 1))
    with db.session() as s:
        assert s.get(RefreshToken, "j1") is None  # ... and their foreign key still points at users
    db.create_all()  # a second start changes nothing
    db.dispose()


# -- 2. logout ends the session it came from -------------------------------------------------------------
def test_logout_without_the_refresh_token_ends_the_whole_session(api: Api) -> None:
    first = login(api.client, "dev")
    other = login(api.client, "dev")  # another session (another device) of the same user
    second = api.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert api.client.get("/auth/me", headers=bearer(first["access_token"])).status_code == 200
    r = api.client.post("/auth/logout", json={}, headers=bearer(second["access_token"]))
    assert r.status_code == 204
    assert_401(api.client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}), "refresh")
    assert_401(api.client.get("/auth/me", headers=bearer(second["access_token"])), "logged-out access")
    assert_401(api.client.get("/auth/me", headers=bearer(first["access_token"])), "earlier access, same session")
    # the other session is not touched
    assert api.client.get("/auth/me", headers=bearer(other["access_token"])).status_code == 200
    assert api.client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code == 200


def test_a_refresh_token_works_once_even_in_parallel(api: Api) -> None:
    tokens = login(api.client, "dev")
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: api.client.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code, range(8)))
    assert sorted(codes) == [200] + [401] * 7


# -- 3. every malformed claim is a 401 --------------------------------------------------------------------
def test_malformed_claims_are_401_never_500(api: Api) -> None:
    with api.ctx.db.session() as s:
        root = s.scalars(select(User).where(User.username == "root")).one()
    pair = api.ctx.auth.issue(root)
    key = api.ctx.auth.key
    good_access = jwt.decode(pair.access_token, key, algorithms=["HS256"])
    good_refresh = jwt.decode(pair.refresh_token, key, algorithms=["HS256"])
    assert api.client.get("/auth/me", headers=bearer(pair.access_token)).status_code == 200
    drop = object()
    variants: list[tuple[str, Any]] = [
        ("sub", "abc"), ("sub", "1.5"), ("sub", "-1"), ("sub", "0"), ("sub", "99999999999999999999999"),
        ("sub", 1), ("sub", drop), ("sub", ""), ("tv", "0"), ("tv", None), ("tv", drop), ("tv", True),
        ("jti", 123), ("jti", ["a"]), ("jti", drop), ("jti", "x" * 500), ("type", drop), ("type", 1),
        ("type", "id"), ("sid", drop), ("sid", {"a": 1}), ("unonce", drop), ("unonce", 5), ("exp", "soon"),
        ("iat", "x"), ("name", ["root"]),
    ]
    for base, path, send in ((good_access, "/auth/me", "header"), (good_refresh, "/auth/refresh", "body")):
        for claim, value in variants:
            claims = {k: v for k, v in base.items() if k != claim}
            if value is not drop:
                claims[claim] = value
            token = jwt.encode(claims, key, algorithm="HS256")
            if send == "header":
                r = api.client.get(path, headers=bearer(token))
            else:
                r = api.client.post(path, json={"refresh_token": token})
            if claim == "name":
                assert r.status_code == 200  # an unused claim is ignored
                continue
            assert_401(r, f"{path} with {claim}={value!r}")
    # the wrong kind of token, and a payload that is not an object
    assert_401(api.client.get("/auth/me", headers=bearer(pair.refresh_token)), "refresh as access")
    assert_401(api.client.post("/auth/refresh", json={"refresh_token": pair.access_token}), "access as refresh")
    not_object = jwt.api_jws.encode(b"[1, 2]", key, algorithm="HS256")
    assert_401(api.client.get("/auth/me", headers=bearer(not_object)), "list payload")


# -- 4. login throttling ----------------------------------------------------------------------------------
@pytest.fixture
def count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 verification made (the real one runs): a spy, so the count is exact."""
    calls: list[str] = []
    lock = threading.Lock()
    real = PasswordHasher.verify

    def verify(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        with lock:
            calls.append(str(password))
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    return calls


def test_parallel_attempts_check_no_more_passwords_than_the_limit(api: Api, count_verifications: list[str]) -> None:
    limit = api.ctx.auth.max_failures  # 3 in the test settings
    server = ApiServer(create_app(api.ctx), "127.0.0.1:0")
    server.start()
    try:
        barrier = threading.Barrier(40)
        with httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=50)) as client:
            def attempt(i: int) -> int:
                barrier.wait()
                return client.post("/auth/login", json={"username": "aud", "password": f"guess-{i}"}).status_code

            with ThreadPoolExecutor(40) as pool:
                codes = list(pool.map(attempt, range(40)))
            assert len(count_verifications) <= limit, f"{len(count_verifications)} passwords checked"
            assert codes.count(401) == len(count_verifications) and codes.count(429) == 40 - codes.count(401)
            r = client.post("/auth/login", json={"username": "aud", "password": PASSWORD})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    finally:
        server.stop()


def test_one_address_cannot_lock_the_admin_out_for_others(api: Api, count_verifications: list[str]) -> None:
    app = create_app(api.ctx)
    attacker = TestClient(app, client=("203.0.113.7", 40000))
    admin = TestClient(app, client=("198.51.100.2", 40000))
    for i in range(3):
        assert attacker.post("/auth/login", json={"username": "root", "password": f"guess-{i}"}).status_code == 401
    r = attacker.post("/auth/login", json={"username": "root", "password": PASSWORD})
    assert r.status_code == 429 and "root" in r.json()["detail"]
    assert len(count_verifications) == 3  # the throttled attempt checked no password
    login(admin, "root")  # from anywhere else the admin logs in at once
    with api.ctx.db.session() as s:
        outcomes = [a.outcome for a in s.scalars(select(AuditRecord).where(AuditRecord.action == "login"))]
    assert outcomes == ["denied"] * 4 + ["success"]


def test_password_spraying_from_one_address_is_limited(api: Api, count_verifications: list[str]) -> None:
    api.ctx.auth.max_failures_per_source = 5
    app = create_app(api.ctx)
    # one host, several addresses of its IPv6 /64: one source
    for i in range(5):
        c = TestClient(app, client=(f"2001:db8:1:2::{i + 1}", 40000))
        assert c.post("/auth/login", json={"username": f"user{i}", "password": "Winter2026!"}).status_code == 401
    r = TestClient(app, client=("2001:db8:1:2::99", 40000)).post("/auth/login", json={"username": "dev",
                                                                                     "password": PASSWORD})
    assert r.status_code == 429 and "2001:db8:1:2::99" in r.json()["detail"]
    assert len(count_verifications) == 5
    login(TestClient(app, client=("2001:db8:1:3::1", 40000)), "dev")  # the next /64 is another source
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1" and source_key("192.0.2.1") == "192.0.2.1"


def test_a_success_clears_the_users_failures_at_that_address(api: Api) -> None:
    for _ in range(2):
        assert api.client.post("/auth/login", json={"username": "dev", "password": "nope"}).status_code == 401
    login(api.client, "dev")
    for _ in range(3):
        assert api.client.post("/auth/login", json={"username": "dev", "password": "nope"}).status_code == 401
    assert api.client.post("/auth/login", json={"username": "dev", "password": PASSWORD}).status_code == 429


# -- 5. the same work whether the user exists, is disabled or not ---------------------------------------
def test_unknown_disabled_and_existing_users_cost_the_same(api: Api, count_verifications: list[str]) -> None:
    auth = api.ctx.auth
    auth.hasher = PasswordHasher(time_cost=2, memory_cost=32768)  # hashing clearly dominates a request
    auth.max_failures = auth.max_failures_per_source = 10_000
    with api.ctx.db.session() as s:
        s.add(User(username="alive", password_hash=auth.hash_password(PASSWORD), role="developer"))
        s.add(User(username="off", password_hash=auth.hash_password(PASSWORD), role="developer", disabled=True))
    cases = {"existing, wrong password": ("alive", "wrong-password"), "existing, right password": ("alive", PASSWORD),
             "unknown": ("nobody", PASSWORD), "disabled, right password": ("off", PASSWORD),
             "disabled, wrong password": ("off", "wrong-password")}
    times: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(5):
        for case, (user, password) in cases.items():
            before = len(count_verifications)
            t0 = time.perf_counter()
            r = api.client.post("/auth/login", json={"username": user, "password": password})
            times[case].append(time.perf_counter() - t0)
            assert r.status_code == (200 if case == "existing, right password" else 401), (case, r.text)
            assert len(count_verifications) - before == 1, f"{case}: {len(count_verifications) - before} hash checks"
    medians = {c: statistics.median(t) for c, t in times.items()}
    assert max(medians.values()) / min(medians.values()) < 3, medians  # coarse: 0 vs 1 hash is ~10x


# -- 8. authenticate, and limit the size, before reading a body ------------------------------------------
def test_large_bodies_get_413_problem_before_they_are_read(api: Api) -> None:
    limit = api.ctx.max_body_bytes
    assert limit == 1 << 20  # the default
    big = b'{"username": "' + b"x" * limit + b'"}'
    for path, headers in (("/auth/login", {}), ("/users", api.headers("root")), ("/users", {})):
        r = api.client.post(path, content=big, headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json") and "max_body_bytes" in r.text
    # a chunked body (no Content-Length) is counted as it streams in
    r = api.client.post("/jobs", content=iter([b"[" + b" " * 65536] * 20), headers={
        **api.headers("root"), "Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    # under the limit all is as before
    assert api.client.post("/auth/login", json={"username": "dev", "password": PASSWORD}).status_code == 200


def test_unauthenticated_bodies_are_not_parsed(api: Api) -> None:
    for path in ("/users", "/jobs", "/silences", "/gpus/GPU-0-0/cordon"):
        r = api.client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert_401(r, path)  # not 422: the body was never parsed
    r = api.client.post("/auth/login", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422  # public routes parse as before


def _raw(port: int, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send a request head (and maybe part of a body) and read the answer without sending the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1])
        return status, data


def test_a_real_server_answers_without_waiting_for_the_body(api: Api) -> None:
    api.ctx.max_body_bytes = 64 * 1024
    server = ApiServer(create_app(api.ctx), "127.0.0.1:0")
    server.start()
    try:
        token = api.token("root")
        post = "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{}"
        # the body is never sent: an answer proves the server did not wait for it
        status, _ = _raw(server.port, post.format("/users", "Content-Length: 1000\r\n"))
        assert status == 401
        for auth in ("", f"Authorization: Bearer {token}\r\n"):
            status, data = _raw(server.port, post.format("/users", f"{auth}Content-Length: 50000000\r\n"))
            assert status == 413 and b"application/problem+json" in data
        # chunked, authenticated: refused once past the limit, the final chunk never sent
        head = post.format("/jobs", f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n")
        chunks = b"".join(b"%x\r\n%s\r\n" % (16384, b" " * 16384) for _ in range(6))
        status, data = _raw(server.port, head, chunks)
        assert status == 413 and b"application/problem+json" in data
        status, _ = _raw(server.port, "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n",
                         b"10\r\n" + b" " * 16)
        assert status == 401
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
