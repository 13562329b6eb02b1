"""Issue #17, items 6, 7, 9, 11, 12 and 13: secrets masked inside URLs, developers see only their own
allocations, bounded audit queries with literal LIKE patterns, private files whatever the umask, long
targets audited on PostgreSQL, and an audit log anchored outside the database (HMAC key, signed
checkpoints) so truncation and re-hashing are detected."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpufleet.exporter.errors import InputError
from sqlalchemy import delete, select, update

from gpufleet.api.audit import TRUNCATED, AuditLog, _payload, chain_hash, keyed_hash, read_checkpoints
from gpufleet.api.context import build_context, initialise
from gpufleet.api.db import AuditRecord, Database
from gpufleet.settings import ApiSettings, FleetSettings, InfluxSettings, Settings, masked
from tests.api.conftest import PASSWORD, Api, make_api

GPUFLEET = Path(sys.executable).with_name("gpufleet")

# -- item 6: secrets inside URLs ---------------------------------------------------------------------
DB_PW, PROM_PW, TOKEN, INFLUX_TOKEN = "Db-Pa55/w@rd", "Prom-Pa55", "Tok3n-abc", "Infl-T0k"
DB_URL = f"postgresql+psycopg://gpufleet:{DB_PW}@db.example:5432/fleet?sslmode=require"
FLEET_URL = f"https://ops:{PROM_PW}@prom.example:9090/?access_token={TOKEN}&step=30"
INFLUX_URL = f"https://influx.example:8086/?org=ml&token={INFLUX_TOKEN}"
SECRETS = (DB_PW, "Pa55", PROM_PW, TOKEN, INFLUX_TOKEN)


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in:\n{text}"


def test_settings_mask_passwords_and_tokens_inside_urls_for_every_role(api: Api, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api=ApiSettings(database_url=DB_URL),
                        fleet=FleetSettings(url=FLEET_URL), influx=InfluxSettings(url=INFLUX_URL))
    # what `serve` hands the API: FleetState(settings=masked(settings)) -> build_context(settings_view=...)
    api.ctx.settings = masked(settings)
    for user in ("root", "aud"):
        r = api.client.get("/settings", headers=api.headers(user))
        assert r.status_code == 200
        _no_secret(r.text)
        body = r.json()
        assert body["api"]["database_url"] == "postgresql+psycopg://gpufleet:***@db.example:5432/fleet?sslmode=require"
        assert body["fleet"]["url"] == "https://ops:***@prom.example:9090/?access_token=***&step=30"
        assert body["influx"]["url"] == "https://influx.example:8086/?org=ml&token=***"
    r = api.client.get("/settings", headers=api.headers("dev"))
    assert r.status_code == 403
    _no_secret(r.text)


def test_config_show_masks_urls_in_both_formats(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    env.update({"GPUFLEET_DATA_DIR": str(tmp_path / "data"), "GPUFLEET_API__DATABASE_URL": DB_URL,
                "GPUFLEET_FLEET__URL": FLEET_URL, "GPUFLEET_INFLUX__URL": INFLUX_URL, "NO_COLOR": "1"})
    for extra in ([], ["--json"]):
        proc = subprocess.run([str(GPUFLEET), "config", "show", *extra], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        _no_secret(proc.stdout + proc.stderr)
        assert "gpufleet:***@db.example:5432/fleet" in proc.stdout and "access_token=***" in proc.stdout


# -- item 7: developers see their own allocations ----------------------------------------------------
@pytest.fixture
def japi(tmp_path: Path) -> Iterator[Api]:
    from gpufleet.allocator.policies import make_policy
    from gpufleet.allocator.queue import JobQueue
    from gpufleet.allocator.state import ClusterState
    from gpufleet.exporter.schema import Snapshot

    from gpufleet.api.backend import FleetState
    from gpufleet.jobs import QueueJobService
    from tests.api.conftest import fleet_snapshot

    snap = fleet_snapshot()
    nodes = sorted({d.node for d in snap.devices})
    snaps = [Snapshot(ts=snap.ts, node=n, devices=[d for d in snap.devices if d.node == n],
                      up={d.uuid: 1 for d in snap.devices if d.node == n}) for n in nodes]
    queue = JobQueue(ClusterState.from_snapshots(snaps), make_policy("default"), path=tmp_path / "queue.json")
    a = make_api(tmp_path, fleet=FleetState(jobs=QueueJobService(queue, clock=lambda: 1_700_000_000.0)))
    yield a
    a.ctx.db.dispose()


def test_a_developer_sees_only_their_own_allocations_and_anonymised_totals(japi: Api) -> None:
    for user, name, gpus in (("dev", "mine", 1), ("dev2", "secret-project", 2), ("root", "ops-burn", 0.5)):
        r = japi.client.post("/jobs", json={"jobs": [{"name": name, "gpus": gpus}]}, headers=japi.headers(user))
        assert r.status_code == 201 and r.json()[0]["state"] == "running", r.text
    fleet = {"jobs": 3, "gpus": 4, "share": 3.5}
    r = japi.client.get("/allocations", headers=japi.headers("dev"))
    assert r.status_code == 200
    body = r.json()
    assert body["fleet"] == fleet
    assert body["total"] == 1 and [(a["job_name"], a["user"]) for a in body["items"]] == [("mine", "dev")]
    assert "secret-project" not in r.text and "ops-burn" not in r.text and "dev2" not in r.text
    for user in ("root", "aud"):
        body = japi.client.get("/allocations", headers=japi.headers(user)).json()
        assert body["fleet"] == fleet and body["total"] == 4
        assert {(a["job_name"], a["user"]) for a in body["items"]} == {
            ("mine", "dev"), ("secret-project", "dev2"), ("ops-burn", "root")}


# -- item 9: bounded audit queries, literal LIKE -------------------------------------------------------
def _cordon(api: Api, n: int, uuid: str = "GPU-0-1") -> None:
    h = api.headers("root")
    for i in range(n):
        assert api.client.post(f"/gpus/{uuid}/cordon", json={"reason": f"r{i}"}, headers=h).status_code == 200


@pytest.mark.parametrize("route", ["/audit", "/audit/export"])
def test_audit_query_parameters_are_bounded_422_never_500(api: Api, route: str) -> None:
    h = api.headers("aud")
    huge = "x" * 50_000
    bad = [{"target": huge}, {"action": huge}, {"user": huge}, {"target": "%_" * 10_000}, {"target": "a\x00b"},
           {"since": "1e300"}, {"until": "nan"}, {"since": "inf"}, {"since": "-1"}, {"limit": "0"},
           {"limit": str(10**7)}]
    if route == "/audit":
        bad += [{"offset": "-1"}, {"offset": str(2**40)}]
    for params in bad:
        r = api.client.get(route, params=params, headers=h)
        assert r.status_code == 422, (params if len(str(params)) < 80 else list(params), r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("application/problem+json")
    assert api.client.get(route, params={"target": "x" * 256, "action": "a" * 64}, headers=h).status_code == 200


def test_percent_and_underscore_are_literal_in_audit_filters(api: Api) -> None:
    _cordon(api, 1, "GPU-0-1")
    _cordon(api, 1, "GPU-1-2")
    h = api.headers("aud")

    def total(**params: str) -> int:
        return int(api.client.get("/audit", params=params, headers=h).json()["total"])
    assert total(target="GPU-0-1") == 1 and total(target="GPU-") == 2
    assert total(target="GPU_0") == 0 and total(target="%") == 0 and total(target="G%1") == 0
    assert total(action="gpu") == 2 and total(action="%") == 0 and total(action="gp_") == 0
    export = api.client.get("/audit/export", params={"target": "_"}, headers=h).text
    assert export.splitlines()[1:] == []
    with pytest.raises(InputError, match="target filter is 50000 characters long"):
        api.ctx.audit.search(target="y" * 50_000)


# -- item 11: private files ------------------------------------------------------------------------------
def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _private_paths(data: Path) -> dict[Path, int]:
    paths = {data: 0o700, data / "secrets": 0o700, data / "audit": 0o700, data / "gpufleet.db": 0o600,
             data / "secrets" / "jwt.key": 0o600, data / "secrets" / "audit.key": 0o600,
             data / "audit" / "checkpoints.jsonl": 0o600}
    paths.update({p: 0o600 for p in data.glob("gpufleet.db-*")})
    return paths


def _init(tmp_path: Path) -> tuple[ApiSettings, Path]:
    settings = ApiSettings(password_hash_time_cost=1, password_hash_memory_kib=8192)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    initialise(settings, tmp_path / "data", admin="root", password_file=pw)
    return settings, tmp_path / "data"


def test_database_keys_and_audit_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the worst case: everything anyone creates is world-writable
    try:
        settings, data = _init(tmp_path)
        ctx = build_context(settings, data)
        ctx.audit.append(user="root", role="admin", action="gpu.cordoned", target="GPU-0-0", outcome="success",
                         source="test")
        paths = _private_paths(data)  # while the database is open: its WAL side files exist
        wrong = {str(p): oct(_mode(p)) for p, want in paths.items() if p.exists() and _mode(p) != want}
        ctx.db.dispose()
    finally:
        os.umask(old)
    assert not wrong, wrong
    assert any(p.name.endswith("-wal") for p in paths)  # WAL side files hold the same rows
    assert [str(p) for p in paths if not p.exists() and "-" not in p.name] == []


def test_existing_readable_files_are_fixed_on_start_with_a_warning(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings, data = _init(tmp_path)
    widened = [data, data / "secrets", data / "gpufleet.db", data / "secrets" / "jwt.key",
               data / "audit" / "checkpoints.jsonl"]
    for p in filter(Path.exists, widened):
        p.chmod(0o755 if p.is_dir() else 0o644)
    with caplog.at_level(logging.WARNING):
        ctx = build_context(settings, data)
    ctx.db.dispose()
    for p in widened:
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), p
        assert any(str(p) in r.getMessage() and "changed to" in r.getMessage() for r in caplog.records), p


# -- item 12: long targets are audited on PostgreSQL ---------------------------------------------------
@pytest.mark.server
def test_a_long_request_path_is_audited_truncated_on_postgresql(pg_api: Api) -> None:
    uuid = "GPU-" + "9" * 400
    h = pg_api.headers("root")
    assert pg_api.client.post(f"/gpus/{uuid}/cordon", json={"reason": "x"}, headers=h).status_code == 404
    assert pg_api.client.post(f"/no/such/{'p' * 300}", json={}, headers=h).status_code in (404, 405)
    items = pg_api.client.get("/audit", params={"action": "gpu"}, headers=h).json()["items"]
    assert len(items) == 1
    rec = items[0]
    assert len(rec["target"]) == 256 and rec["target"].endswith(TRUNCATED) and rec["target"].startswith("GPU-999")
    assert rec["detail"]["target_length"] == len(uuid) and rec["outcome"] != "success"
    unrouted = pg_api.client.get("/audit", params={"target": "/no/such/ppp"}, headers=h).json()["items"]
    assert len(unrouted) == 1 and unrouted[0]["target"].endswith(TRUNCATED)
    verdict = pg_api.client.get("/audit/verify", headers=h).json()
    assert verdict["ok"] is True, verdict  # the chain covers the stored (truncated) value


# -- item 13: the audit log is anchored outside the database ---------------------------------------
def _rehash(db: Database, *, start: int = 1, key: bytes | None = None) -> None:
    """An attacker with the database (not the key) recomputes the chain from record ``start`` on with the
    project's own functions, leaving the records before it as they are."""
    prev = "0" * 64
    with db.session() as s:
        for rec in s.execute(select(AuditRecord).order_by(AuditRecord.seq)).scalars():
            if rec.seq < start:
                prev = rec.hash
                continue
            payload = _payload(rec.ts, rec.user, rec.role, rec.action, rec.target, rec.outcome, rec.source,
                               rec.detail or {})
            rec.prev_hash = prev
            rec.hash = prev = keyed_hash(key, prev, payload) if key else chain_hash(prev, payload)


def _verify(api: Api) -> dict:  # type: ignore[type-arg]
    r = api.client.get("/audit/verify", headers=api.headers("aud"))
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def _head(api: Api) -> int:
    with api.ctx.db.session() as s:
        return int(s.execute(select(AuditRecord.seq).order_by(AuditRecord.seq.desc()).limit(1)).scalar_one())


def test_deleting_the_newest_rows_is_detected_by_the_checkpoint(api: Api) -> None:
    _cordon(api, 4)
    cp = api.ctx.audit.checkpoint()
    assert cp is not None and cp.seq == _head(api)
    assert _verify(api)["ok"] is True
    with api.ctx.db.session() as s:
        s.execute(delete(AuditRecord).where(AuditRecord.seq > cp.seq - 2))
    v = _verify(api)
    assert v["ok"] is False and v["head_seq"] == cp.seq - 2 and v["last_checkpoint_seq"] == cp.seq
    assert any(f"the log ends at record {cp.seq - 2}" in p and f"vouches for record {cp.seq}" in p
               and f"records {cp.seq - 1}..{cp.seq}" in p for p in v["problems"]), v


@pytest.mark.parametrize("tamper", ["delete", "edit", "insert"])
def test_rewriting_a_row_and_recomputing_the_chain_is_detected(api: Api, tamper: str) -> None:
    _cordon(api, 4)
    cp = api.ctx.audit.checkpoint()
    assert cp is not None
    with api.ctx.db.session() as s:
        target = int(s.execute(select(AuditRecord.seq).where(AuditRecord.action == "gpu.cordoned")
                               .order_by(AuditRecord.seq).limit(1)).scalar_one())
        if tamper == "delete":
            s.execute(delete(AuditRecord).where(AuditRecord.seq == target))
        elif tamper == "edit":
            s.execute(update(AuditRecord).where(AuditRecord.seq == target).values(user="mallory"))
        else:
            s.add(AuditRecord(ts=1.0, user="mallory", role="admin", action="user.create", target="mallory",
                              outcome="success", source="1.2.3.4", detail={}, prev_hash="", hash="pending"))
    first = {"delete": target + 1, "edit": target, "insert": cp.seq + 1}[tamper]
    _rehash(api.ctx.db, start=first)
    v = _verify(api)
    assert v["ok"] is False and v["anchored"] is True and v["first_broken_seq"] == first, v
    assert "recomputed without the key" in v["reason"], v
    assert v["problems"][0] == f"record {first}: {v['reason']}"
    if tamper != "insert":  # the checkpoint of the head no longer matches either
        assert any(f"record {cp.seq}'s hash differs from the checkpoint" in p for p in v["problems"]), v


def test_a_chain_recomputed_with_another_key_is_detected(api: Api) -> None:
    _cordon(api, 2)
    _rehash(api.ctx.db, key=b"k" * 32)
    v = _verify(api)
    assert v["ok"] is False and "recomputed with another key" in v["reason"], v


def test_an_edited_or_deleted_checkpoint_file_is_reported(api: Api) -> None:
    _cordon(api, 2)
    api.ctx.audit.checkpoint()
    cp_file = api.ctx.audit.anchor.checkpoint_file  # type: ignore[union-attr]
    lines = cp_file.read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["seq"] = 1
    cp_file.write_text("\n".join([*lines[:-1], json.dumps(forged)]) + "\n")
    v = _verify(api)
    assert v["ok"] is False and any("wrong HMAC" in p for p in v["problems"]), v
    cp_file.unlink()
    v = _verify(api)
    assert v["ok"] is False and any("is missing" in p for p in v["problems"]), v


def test_checkpoints_go_to_the_file_and_the_service_log(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    _cordon(api, 3)
    with caplog.at_level(logging.INFO, logger="gpufleet.audit"):
        cp = api.ctx.audit.checkpoint()
    assert cp is not None and api.ctx.audit.last_checkpoint_seq == cp.seq == _head(api)
    assert api.ctx.audit.checkpoint() is None  # the head has not moved: nothing new to vouch for
    cps, problems = read_checkpoints(api.ctx.audit.anchor.checkpoint_file)  # type: ignore[union-attr]
    assert not problems and cps[0].kind == "anchor" and cps[-1].seq == cp.seq and cps[-1].hash == cp.hash
    logged = [r.getMessage() for r in caplog.records if r.name == "gpufleet.audit"]
    assert any(cp.line() in m for m in logged), logged  # plain-text logs carry the whole signed line


def test_an_unanchored_log_of_an_older_version_is_anchored_at_its_head(tmp_path: Path) -> None:
    from gpufleet.api.audit import open_anchor

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.create_all()
    old = AuditLog(db)
    for i in range(3):
        old.append(user="u", role="admin", action="gpu.cordoned", target=f"GPU-{i}", outcome="success", source="x")
    anchor = open_anchor(tmp_path / "secrets" / "audit.key", tmp_path / "audit" / "cp.jsonl", db)
    log = AuditLog(db, anchor)
    log.append(user="u", role="admin", action="gpu.cordoned", target="GPU-3", outcome="success", source="x")
    log.checkpoint()
    r = log.verify()
    assert r.ok and r.records == 4 and r.anchored, r.problems
    with db.session() as s:  # rewriting the older, unkeyed part still breaks the anchor entry
        s.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(target="GPU-x"))
    _rehash(db)
    r = log.verify()
    assert not r.ok and r.first_broken_seq == 4, r.problems
    assert any("record 3's hash differs from the checkpoint" in p for p in r.problems), r.problems
    db.dispose()


def test_cli_verify_reports_truncation_exits_1_and_rotate_key_keeps_it_verifiable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    env.update({"GPUFLEET_DATA_DIR": str(tmp_path / "data"), "NO_COLOR": "1",
                "GPUFLEET_API__PASSWORD_HASH_TIME_COST": "1", "GPUFLEET_API__PASSWORD_HASH_MEMORY_KIB": "8192"})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(GPUFLEET), *args], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
    (tmp_path / "pw").write_text(PASSWORD)
    assert run("init", "--admin-password-file", str(tmp_path / "pw")).returncode == 0
    data = tmp_path / "data"
    settings = ApiSettings(password_hash_time_cost=1, password_hash_memory_kib=8192)
    ctx = build_context(settings, data)
    for i in range(4):
        ctx.audit.append(user="root", role="admin", action="gpu.cordoned", target=f"GPU-{i}", outcome="success",
                         source="test")
    ctx.audit.checkpoint()
    ctx.db.dispose()
    rotated = run("audit", "rotate-key")
    assert rotated.returncode == 0 and "audit key rotated" in rotated.stdout, rotated.stderr
    assert len(list((data / "secrets" / "audit-keys-retired").glob("*.key"))) == 1
    ok = run("audit", "verify")
    assert ok.returncode == 0 and "audit log intact: 5 records" in ok.stdout, ok.stdout + ok.stderr
    with sqlite3.connect(data / "gpufleet.db") as db:
        db.execute("DELETE FROM audit_log WHERE seq > 3")
    broken = run("audit", "verify")
    assert "Traceback" not in broken.stderr
    assert "BROKEN" in broken.stderr and "the log ends at record 3" in broken.stderr, broken.stderr
    assert "records 4..5" in broken.stderr
    assert broken.returncode == 1, "needs item 14's fix of gpufleet/cli/__init__.py main()"


@pytest.mark.server
def test_serve_checkpoints_on_schedule_and_exports_the_sequence_number(tmp_path: Path) -> None:
    import httpx

    from gpufleet.service import build_service
    from gpufleet.settings import load_settings
    from tests.servers import free_port, wait_until

    settings = load_settings(None, {
        "data_dir": str(tmp_path / "data"),
        "exporter": {"source": "twin", "interval": 1, "listen": f"127.0.0.1:{free_port()}"},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1,
                "password_hash_memory_kib": 8192, "audit_checkpoint_interval": 1},
        "twin": {"nodes": 1, "gpus_per_node": 2, "seed": 3, "failures": False},
    })
    (tmp_path / "pw").write_text(PASSWORD)
    initialise(settings.api, settings.data_dir, password_file=tmp_path / "pw")
    svc = build_service(settings)
    svc.start()
    try:
        assert svc.api is not None
        for _ in range(3):
            httpx.post(f"{svc.api.url}/auth/login", json={"username": "admin", "password": "wrong-password"})
        head = 4  # init + three logins

        def exported() -> bool:
            body = httpx.get(svc.metrics_server.url).text
            return f"gpufleet_audit_checkpoint_seq {head}" in body or f"gpufleet_audit_checkpoint_seq {head}.0" in body
        wait_until(exported, 30, "a scheduled checkpoint of the new head, exported as a metric")
    finally:
        svc.stop()
    cps, problems = read_checkpoints(tmp_path / "data" / "audit" / "checkpoints.jsonl")
    assert not problems and cps[0].seq == 0 and cps[-1].seq == head
