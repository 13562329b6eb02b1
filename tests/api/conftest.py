"""API fixtures: an initialised data folder, the app over a FleetState, tokens for every role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gpufleet.exporter.schema import Device, Sample, Snapshot
from sqlalchemy import select

from gpufleet.api.app import create_app
from gpufleet.api.backend import FleetState
from gpufleet.api.context import build_context, initialise
from gpufleet.api.db import User
from gpufleet.api.deps import AppContext
from gpufleet.settings import ApiSettings

PASSWORD = "correct-horse-battery"


def fleet_snapshot(ts: float = 1_700_000_000.0) -> Snapshot:
    devs = [Device(uuid=f"GPU-{n}-{i}", index=i, node=f"node{n}", model="NVIDIA H100 80GB HBM3",
                   memory_total_bytes=80 * 2**30) for n in range(2) for i in range(4)]
    samples = []
    for d in devs:
        samples += [Sample(d.uuid, "util_gpu", 0.5 + d.index / 10, ts), Sample(d.uuid, "temperature_gpu", 60.0, ts),
                    Sample(d.uuid, "fb_used", 10 * 2**30, ts), Sample(d.uuid, "power_usage", 400.0, ts)]
    samples.append(Sample("GPU-0-0", "process_memory", 5 * 2**30, ts,
                          (("container", "trainer"), ("namespace", "ml"), ("pid", "4242"), ("pod", "train-0"))))
    return Snapshot(ts=ts, node="*", devices=devs, samples=samples, up={d.uuid: 1 for d in devs})


@dataclass
class Api:
    client: TestClient
    ctx: AppContext
    data_dir: Path

    def token(self, username: str) -> str:
        with self.ctx.db.session() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one()
        return self.ctx.auth.issue(user).access_token

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}


def make_api(tmp_path: Path, database_url: str | None = None, fleet: FleetState | None = None) -> Api:
    # argon2id with its lowest memory setting keeps the suite fast; production keeps the defaults
    settings = ApiSettings(database_url=database_url, login_max_failures=3, login_failure_window=60,
                           password_hash_time_cost=1, password_hash_memory_kib=8192)
    pw = tmp_path / "admin-password"
    pw.write_text(PASSWORD + "\n")
    initialise(settings, tmp_path / "data", admin="root", password_file=pw)
    fleet = fleet or FleetState()
    fleet.update_snapshots([fleet_snapshot()])
    ctx = build_context(settings, tmp_path / "data", fleet=fleet, settings_view={"api": {"listen": "x"}})
    with ctx.db.session() as s:
        for name, role in (("dev", "developer"), ("dev2", "developer"), ("aud", "auditor")):
            s.add(User(username=name, password_hash=ctx.auth.hash_password(PASSWORD), role=role, team="ml"))
    return Api(TestClient(create_app(ctx)), ctx, tmp_path / "data")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = make_api(tmp_path)
    yield a
    a.ctx.db.dispose()


@pytest.fixture
def pg_api(tmp_path: Path) -> Iterator[Api]:
    """The API on a real PostgreSQL server of its own (skipped without the binaries, failing when CI=true)."""
    from tests.servers import Postgres

    pg = Postgres(tmp_path / "server")
    try:
        api = make_api(tmp_path, database_url=pg.url)
        yield api
        api.ctx.db.dispose()
    finally:
        pg.stop()
