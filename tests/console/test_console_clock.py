"""Regression: the jobs pages showed a job "started before it was submitted". The job service took
submit / cancel times from its own clock but placement times from the snapshot (the twin's simulated
time), and the job page's timeline mixed the scheduler's audit rows (job clock) with the API's (wall).

The service here runs on a clock an hour behind the wall, as `gpufleet demo --serve` does (its clock
goes on from the demo's simulated end), while the twin's snapshots keep their own time."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.console.conftest import Served, login_form_session, settings_for, start_service
from tests.servers import wait_until

pytestmark = pytest.mark.server
OFFSET = 3600.0


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = settings_for(tmp_path_factory.mktemp("clock") / "data", {"nodes": 1, "gpus_per_node": 2})
    s = start_service(settings, clock=lambda: time.time() - OFFSET)
    try:
        yield s
    finally:
        s.service.stop()


def _stamps(text: str) -> list[float]:
    return [datetime.strptime(m, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
            for m in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text)]


def _timeline(page: str) -> str:
    found = re.search(r'<ol class="timeline" id="job-timeline">(.*?)</ol>', page, re.S)
    assert found is not None
    return found.group(1)


def test_a_job_never_starts_or_ends_before_it_was_submitted(skewed: Served) -> None:
    h = skewed.headers("dev")
    r = httpx.post(f"{skewed.url}/jobs", headers=h, json={"jobs": [
        {"name": "first", "client_id": "a", "gpus": 2, "command": ["sh", "-c", "sleep 0.3"]},
        {"name": "then", "depends_on": ["a"], "gpus": 1, "command": ["true"]},  # placed by a later cycle
        {"name": "waits", "gpus": 1, "command": ["sleep", "60"]}]})
    assert r.status_code == 201, r.text
    first, then, waits = (j["id"] for j in r.json())

    def job(i: str) -> dict:
        return httpx.get(f"{skewed.url}/jobs/{i}", headers=h).json()
    wait_until(lambda: job(then)["state"] == "succeeded" and job(waits)["state"] == "running", 60,
               "the dependent job done, the waiting one running")
    r = httpx.post(f"{skewed.url}/jobs/{waits}/cancel", headers=skewed.headers())
    assert r.status_code == 200, r.text
    wait_until(lambda: job(waits)["state"] == "cancelled", 20, "the cancel")
    for i in (first, then, waits):
        j = job(i)
        assert j["submitted_at"] <= j["started_at"] <= j["finished_at"], j
        assert j["finished_at"] - j["submitted_at"] < 120, j  # one clock: no hour between them
    # the pages: a developer's timeline (the job's own times), an admin's (the audit log's transitions)
    dev, _ = login_form_session(skewed.url, "dev")
    adm, _ = login_form_session(skewed.url, "admin")
    for c in (dev, adm):
        for i in (then, waits):
            stamps = _stamps(_timeline(c.get(f"/console/jobs/{i}").text))
            assert len(stamps) >= 3 and stamps == sorted(stamps) and stamps[-1] - stamps[0] < 120, (i, stamps)
    page = adm.get(f"/console/jobs/{waits}").text
    assert "cancel by admin" in page  # the request is named, apart from the timeline
    for c in (dev, adm):
        c.close()
