"""/jobs over the real allocator queue: batch submit with dependencies, own-job rules, cancel, allocations,
drain requeues, rejections with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpufleet.allocator.policies import make_policy
from gpufleet.allocator.queue import JobQueue
from gpufleet.allocator.state import ClusterState

from gpufleet.api.backend import FleetState
from gpufleet.jobs import QueueJobService
from tests.api.conftest import Api, fleet_snapshot, make_api


@pytest.fixture
def japi(tmp_path: Path):  # type: ignore[no-untyped-def]
    snap = fleet_snapshot()
    per_node = {}
    for d in snap.devices:
        per_node.setdefault(d.node, []).append(d)
    from gpufleet.exporter.schema import Snapshot

    snaps = [Snapshot(ts=snap.ts, node=n, devices=ds, up={d.uuid: 1 for d in ds}) for n, ds in per_node.items()]
    queue = JobQueue(ClusterState.from_snapshots(snaps), make_policy("default"), path=tmp_path / "queue.json")
    fleet = FleetState(jobs=QueueJobService(queue, clock=lambda: 1_700_000_000.0))
    api = make_api(tmp_path, fleet=fleet)
    yield api
    api.ctx.db.dispose()


def test_batch_with_dependencies_runs_what_fits(japi: Api) -> None:
    h = japi.headers("dev")
    batch = {"jobs": [
        {"name": "prep", "gpus": 2, "client_id": "a", "duration_s": 600},
        {"name": "train", "gpus": 4, "depends_on": ["a"], "priority": "high"},
        {"name": "notebook", "gpus": 0.25},
    ]}
    r = japi.client.post("/jobs", json=batch, headers=h)
    assert r.status_code == 201, r.text
    jobs = {j["name"]: j for j in r.json()}
    assert jobs["prep"]["state"] == "running" and len(jobs["prep"]["placement"]) == 2
    assert jobs["train"]["state"] == "pending" and jobs["train"]["depends_on"] == [jobs["prep"]["id"]]
    assert jobs["notebook"]["state"] == "running" and jobs["notebook"]["gpus"] == 0.25
    allocs = japi.client.get("/allocations", headers=h).json()
    assert allocs["total"] == 3 and {a["share"] for a in allocs["items"]} == {1.0, 0.25}


def test_rejections_name_the_reason_and_nothing_is_queued(japi: Api) -> None:
    h = japi.headers("dev")
    r = japi.client.post("/jobs", json={"jobs": [{"name": "ok", "gpus": 1},
                                                  {"name": "huge", "gpus": 64},
                                                  {"name": "orphan", "gpus": 1, "depends_on": ["nope"]}]}, headers=h)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "huge" in detail and "orphan" in detail
    assert japi.client.get("/jobs", headers=h).json()["total"] == 0
    cycle = {"jobs": [{"name": "x", "client_id": "x", "depends_on": ["y"]},
                      {"name": "y", "client_id": "y", "depends_on": ["x"]}]}
    r = japi.client.post("/jobs", json=cycle, headers=h)
    assert r.status_code == 409 and "cycle" in r.json()["detail"]


def test_developers_see_and_cancel_only_their_own(japi: Api) -> None:
    mine = japi.client.post("/jobs", json={"jobs": [{"name": "a", "gpus": 1}]}, headers=japi.headers("dev")).json()[0]
    japi.client.post("/jobs", json={"jobs": [{"name": "b", "gpus": 1}]}, headers=japi.headers("dev2"))
    assert [j["name"] for j in japi.client.get("/jobs", headers=japi.headers("dev")).json()["items"]] == ["a"]
    assert japi.client.get("/jobs", headers=japi.headers("aud")).json()["total"] == 2
    assert japi.client.post(f"/jobs/{mine['id']}/cancel", headers=japi.headers("dev2")).status_code == 403
    assert japi.client.get(f"/jobs/{mine['id']}", headers=japi.headers("dev2")).status_code == 403
    r = japi.client.post(f"/jobs/{mine['id']}/cancel", headers=japi.headers("dev"))
    assert r.json()["state"] == "cancelled"
    assert japi.client.post(f"/jobs/{mine['id']}/cancel", headers=japi.headers("dev")).status_code == 409


def test_drain_requeues_the_gpus_jobs(japi: Api) -> None:
    job = japi.client.post("/jobs", json={"jobs": [{"name": "long", "gpus": 1, "checkpoint_interval_s": 60,
                                                    "preemptible": True}]},
                           headers=japi.headers("dev")).json()[0]
    uuid = job["placement"][0]
    r = japi.client.post(f"/gpus/{uuid}/drain", json={"reason": "risk"}, headers=japi.headers("root"))
    assert r.json()["state"] == "draining"
    after = japi.client.get(f"/jobs/{job['id']}", headers=japi.headers("dev")).json()
    assert uuid not in after["placement"] and after["restarts"] == 1


def test_drain_lets_a_non_preemptible_job_finish(japi: Api) -> None:
    job = japi.client.post("/jobs", json={"jobs": [{"name": "serve", "gpus": 1, "task_type": "inference"}]},
                           headers=japi.headers("dev")).json()[0]
    assert job["preemptible"] is False and job["priority"] == "high"  # the inference defaults
    uuid = job["placement"][0]
    assert japi.client.post(f"/gpus/{uuid}/drain", json={"reason": "x"}, headers=japi.headers("root")).status_code == 200
    after = japi.client.get(f"/jobs/{job['id']}", headers=japi.headers("dev")).json()
    assert after["state"] == "running" and after["placement"] == [uuid] and after["restarts"] == 0


def test_unknown_field_and_unsafe_name_are_refused(japi: Api) -> None:
    h = japi.headers("dev")
    r = japi.client.post("/jobs", json={"jobs": [{"name": "x", "comand": ["true"]}]}, headers=h)
    assert r.status_code == 422 and "comand" in r.text
    r = japi.client.post("/jobs", json={"jobs": [{"name": "hog/x"}]}, headers=h)
    assert r.status_code == 422 and "name" in r.text
    assert japi.client.get("/jobs", headers=h).json()["total"] == 0
