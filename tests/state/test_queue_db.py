"""The queue, jobs, allocations and operator overrides in the database (SQLite and a real PostgreSQL):
row-level writes, restart, cordon / drain / uncordon held across cycles and restarts, migrations, the
one-time import of older JSON state files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from gpufleet.allocator.jobs import JobSpec
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import JobQueue
from gpufleet.allocator.state import ClusterState, Health, NodeSpec
from gpufleet.exporter.schema import Snapshot
from sqlalchemy import event, text

from gpufleet.jobs import QueueJobService, open_queue
from gpufleet.state import close_state, open_state
from gpufleet.state.migrate import current, head, target_metadata
from tests.servers import Postgres


def cluster() -> ClusterState:
    return ClusterState.from_specs([NodeSpec(f"n{i}", 64000, 262144, 4, "H100") for i in range(2)])


def up_snapshot(state: ClusterState, ts: float) -> Snapshot:
    """A snapshot that sees every GPU up (what used to reset a cordon every cycle)."""
    return Snapshot(ts=ts, node="n0", devices=[], samples=[], up={u: True for row in state.uuids for u in row})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        u = f"sqlite:///{tmp_path / 'state.db'}"
        yield u
        close_state(u)
        return
    pg = Postgres(tmp_path / "pg")
    try:
        yield pg.url
        close_state(pg.url)
    finally:
        pg.stop()


def reopen(url: str) -> JobQueue:
    close_state(url)  # a fresh engine: nothing cached in the process
    return open_queue(url, cluster(), make_policy("default"))


def test_every_change_is_a_row_write_and_survives_reopen(url: str) -> None:
    q = open_queue(url, cluster(), make_policy("default"))
    q.submit([JobSpec(f"j{i}", gpus=1, duration_s=100) for i in range(12)], 0.0)
    assert len(q.schedule(0.0)) == 8
    statements: list[str] = []
    engine = q.store.db.engine  # type: ignore[union-attr]
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    q.complete("j0", 50.0)
    job_writes = [s for s in statements if "jobs" in s.lower() and "insert" in s.lower()]
    assert len(job_writes) == 1  # one upsert (executemany of the touched row), never the whole queue
    q2 = reopen(url)
    assert q2.jobs["j0"].status == "succeeded" and q2.jobs["j0"].finished == 50.0
    assert sum(r.status == "running" for r in q2.jobs.values()) == 7
    assert q2.state.allocated_milli() == 7000  # running jobs keep their GPUs
    assert q2._seq == 12 and len(q2.usage) == 1
    trans = q2.store.transitions("j0")  # type: ignore[union-attr]
    assert trans[0][:2] == (None, "pending") and trans[-1][1] == "succeeded"


def test_cordon_holds_across_cycles_and_restart_drain_and_uncordon(url: str) -> None:
    q = open_queue(url, cluster(), make_policy("default"))
    svc = QueueJobService(q, clock=lambda: 10.0)
    cordoned = q.state.uuids[0]
    for u in cordoned:
        svc.set_gpu_health(u, "cordoned", reason="PSU swap", by="ops")
    svc.submit([{"name": f"a{i}", "gpus": 1, "duration_s": 1000} for i in range(6)], "dev", "ml")
    for t in (11.0, 12.0, 13.0):  # collection cycles see every GPU up
        svc.observe(up_snapshot(q.state, t), t)
    on_cordoned = [a for a in svc.allocations() if a["uuid"] in cordoned]
    assert on_cordoned == [] and len(svc.allocations()) == 4
    q2 = reopen(url)
    svc2 = QueueJobService(q2, clock=lambda: 20.0)
    o = q2.state.overrides[("gpu", cordoned[0])]
    assert (o.health, o.reason, o.by, o.at) == (Health.CORDONED, "PSU swap", "ops", 10.0)
    svc2.observe(up_snapshot(q2.state, 21.0), 21.0)
    assert [a for a in svc2.allocations() if a["uuid"] in cordoned] == []
    # drain a busy GPU: its job is requeued, nothing new lands there
    busy = svc2.allocations()[0]["uuid"]
    svc2.set_gpu_health(busy, "draining", reason="fan", by="ops")
    svc2.observe(up_snapshot(q2.state, 22.0), 22.0)
    assert busy not in {a["uuid"] for a in svc2.allocations()}
    assert svc2.gpu_overrides()[busy] == "draining"
    # uncordon: placement resumes there, and the lifted override is gone after a restart
    for u in cordoned:
        svc2.set_gpu_health(u, "ok", by="ops")
    svc2.observe(up_snapshot(q2.state, 23.0), 23.0)
    assert {a["uuid"] for a in svc2.allocations()} & set(cordoned)
    q3 = reopen(url)
    assert set(QueueJobService(q3).gpu_overrides()) == {busy}


def test_migrated_schema_matches_the_models(url: str) -> None:
    store = open_state(url)
    assert current(store.db) == head()
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), target_metadata())
    assert diff == []
    from gpufleet.state.migrate import upgrade

    upgrade(store.db)  # idempotent


def test_a_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    from gpufleet.api.db import Database, User

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    old.create_all()  # what gpufleet did before Alembic
    with old.session() as s:
        s.add(User(username="kept", password_hash="x", role="admin"))
    old.dispose()
    store = open_state(url)
    try:
        with store.db.engine.connect() as conn:
            assert conn.execute(text("select username from users")).scalar() == "kept"
            assert conn.execute(text("select count(*) from jobs")).scalar() == 0
    finally:
        close_state(url)


def test_old_queue_json_is_imported_once_and_renamed(tmp_path: Path) -> None:
    legacy = tmp_path / "allocator" / "queue.json"
    old = JobQueue(cluster(), make_policy("default"), path=legacy)
    old.submit([JobSpec(f"o{i}", gpus=1) for i in range(3)], 0.0)
    old.schedule(0.0)
    old.state.set_gpu_override("n1/gpu3", Health.CORDONED)
    old.submit([JobSpec("late", gpus=1)], 1.0)  # saved with the override
    url = f"sqlite:///{tmp_path / 'state.db'}"
    q = open_queue(url, cluster(), make_policy("default"), legacy_path=legacy)
    assert not legacy.exists() and legacy.with_name("queue.json.imported").exists()
    assert sorted(q.jobs) == ["late", "o0", "o1", "o2"]
    q2 = reopen(url)
    assert sorted(q2.jobs) == ["late", "o0", "o1", "o2"] and ("gpu", "n1/gpu3") in q2.state.overrides
    close_state(url)


def test_corrupt_old_queue_json_is_a_clear_error_and_kept(tmp_path: Path) -> None:
    from gpufleet.exporter.errors import InputError

    legacy = tmp_path / "queue.json"
    legacy.write_text("{not json")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with pytest.raises(InputError, match="not valid JSON"):
        open_queue(url, cluster(), make_policy("default"), legacy_path=legacy)
    assert legacy.read_text() == "{not json"
    close_state(url)


def test_silences_and_alert_state_rows(tmp_path: Path) -> None:
    from gpufleet.alerting.silences import SilenceStore, parse_matcher

    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_state(url)
    silences = SilenceStore(tmp_path / "unused.json", backend=store.silences_backend(), refresh_s=0)
    s = silences.add([parse_matcher("node=n1")], 0.0, 100.0, created_by="ops", now=0.0)
    assert silences.silencing({"node": "n1"}, 50.0) is not None
    silences.expire(s.id, 60.0, by="ops")
    again = SilenceStore(tmp_path / "unused.json", backend=store.silences_backend())
    assert again.silencing({"node": "n1"}, 70.0) is None and again.all()[0].expired_by == "ops"
    assert not (tmp_path / "unused.json").exists()
    alerts = store.alert_backend()
    alerts.write([{"key": "k1", "rule": "r"}], [], {"g": 5.0})
    alerts.write([], ["k1"], {})
    assert alerts.load() == ([], {"g": 5.0})
    close_state(url)


def test_old_alerting_json_is_imported(tmp_path: Path) -> None:
    from gpufleet.settings import load_settings
    from gpufleet.state.service import alert_backends

    data = tmp_path / "data"
    (data / "alerting").mkdir(parents=True)
    (data / "alerting" / "silences.json").write_text(json.dumps([
        {"id": "abc", "matchers": ["node=n1"], "starts_at": 0.0, "ends_at": 9e9, "created_by": "", "comment": "",
         "expired_by": ""}]))
    (data / "alerting" / "state.json").write_text(json.dumps({"version": 1, "alerts": [], "groups": {"g": 1.0}}))
    settings = load_settings(None, {"data_dir": str(data)})
    silences, alerts = alert_backends(settings, data)
    assert [d["id"] for d in silences.load()] == ["abc"] and alerts.load()[1] == {"g": 1.0}
    assert (data / "alerting" / "silences.json.imported").exists()
    assert not (data / "alerting" / "state.json").exists()
    close_state(f"sqlite:///{(data / 'gpufleet.db').resolve()}")
