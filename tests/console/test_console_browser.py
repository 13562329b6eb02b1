"""The web console in a real browser (headless Chromium via Selenium) on a real `serve` over the twin:
what each role sees and may do, a batch with a dependency run to the end with its log followed, a job
cancelled, a GPU cordoned (no job placed on it), a silence created (the alert shown silenced), the audit
log searched and its CSV downloaded; and forbidden actions posted straight to the server refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.conftest import USERS, Served, by, click, ids, login_form_session, sign_in
from tests.servers import wait_until

pytestmark = pytest.mark.server


def test_sign_in_refuses_a_wrong_password_and_sets_a_strict_cookie(served: Served, browser: Any) -> None:
    d = browser
    d.delete_all_cookies()
    d.get(f"{served.url}/")  # / leads to the console's sign-in form
    assert "/console/login" in d.current_url
    d.find_element(by("id"), "username").send_keys("admin")
    d.find_element(by("id"), "password").send_keys("not-the-password")
    click(d, d.find_element(by("id"), "signin"))
    assert "password" in d.find_element(by("id"), "login-error").text.lower()
    sign_in(d, served.url, "admin")
    cookie = d.get_cookie("gpufleet_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    r = httpx.get(f"{served.url}/console/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "<script>" not in r.text


def test_each_role_sees_only_what_it_may_use(served: Served, browser: Any) -> None:
    d = browser
    uuid = httpx.get(f"{served.url}/gpus", headers=served.headers()).json()["items"][0]["uuid"]
    seen = {}
    for role, name in USERS.items():
        sign_in(d, served.url, name)
        assert len(d.find_elements(by("css"), "#fleet-grid .cell")) == 8
        nav = ids(d, "nav-jobs", "nav-alerts", "nav-capacity", "nav-audit", "nav-users")
        d.get(f"{served.url}/console/gpus/{uuid}")
        gpu = ids(d, "cordon", "drain", "uncordon")
        d.get(f"{served.url}/console/jobs")
        jobs = ids(d, "job-form", "batch-form")
        d.get(f"{served.url}/console/users")
        users = ids(d, "users-table", "user-form")
        d.get(f"{served.url}/console/alerts")
        alerts = ids(d, "silence-form")
        seen[role] = {**nav, **gpu, **jobs, **users, **alerts}
        click(d, d.find_element(by("id"), "signout"))
        wait_until(lambda: "/console/login" in d.current_url, 10, "the sign-in page after sign-out")
    everything = dict.fromkeys(seen["admin"], True)
    assert seen["admin"] == everything
    assert seen["developer"] == {**everything, "nav-audit": False, "nav-users": False, "cordon": False, "drain": False,
                                 "uncordon": False, "users-table": False, "user-form": False, "silence-form": False}
    assert seen["auditor"] == {**everything, "cordon": False, "drain": False, "uncordon": False, "job-form": False,
                               "batch-form": False, "user-form": False, "silence-form": False}
    d.get(f"{served.url}/console/fleet")  # signed out: back to the sign-in form
    assert "/console/login" in d.current_url


def test_a_batch_with_a_dependency_runs_and_a_job_is_cancelled(served: Served, browser: Any, tmp_path: Path) -> None:
    d = browser
    sign_in(d, served.url, "dev")
    batch = tmp_path / "batch.yaml"
    batch.write_text("jobs:\n"
                     "  - {name: prepare, client_id: a, gpus: 1, command: [sh, -c, 'echo prepared']}\n"
                     "  - {name: train, depends_on: [a], gpus: 1, command: [sh, -c, 'echo trained; echo epoch 1']}\n")
    d.get(f"{served.url}/console/jobs")
    d.find_element(by("id"), "batch-file").send_keys(str(batch))
    click(d, d.find_element(by("id"), "submit-batch-button"))
    assert "Submitted 2 jobs" in d.find_element(by("css"), ".flash").text
    train = d.find_element(by("css"), "#jobs-table tr[data-job] td a")  # newest first
    assert train.text == "train"
    click(d, train)
    dep = d.find_element(by("css"), "#job-timeline").text
    assert dep  # transitions are listed
    # the page follows the log and the state by itself (static/console.js)
    wait_until(lambda: d.find_element(by("id"), "job-state").text == "succeeded", 60, "train to succeed")
    wait_until(lambda: "epoch 1" in d.find_element(by("id"), "job-log").text, 10, "train's log followed")
    h = served.headers("dev")
    jobs = {j["name"]: j for j in httpx.get(f"{served.url}/jobs", headers=h).json()["items"]}
    assert jobs["train"]["depends_on"] == [jobs["prepare"]["id"]]
    assert jobs["prepare"]["state"] == "succeeded"  # (the order of the two runs is the job engine's, tested there)
    # one job from the form, cancelled from its page
    d.get(f"{served.url}/console/jobs")
    form = d.find_element(by("id"), "job-form")
    form.find_element(by("css"), "input[name=name]").send_keys("long-one")
    form.find_element(by("css"), "input[name=command]").send_keys("sleep 600")
    click(d, d.find_element(by("id"), "submit-job"))
    wait_until(lambda: "long-one" in d.title, 10, "the new job's page")
    click(d, d.find_element(by("id"), "cancel"))
    wait_until(lambda: d.find_element(by("id"), "job-state").text == "cancelled", 20, "the job cancelled")
    assert not d.find_elements(by("id"), "cancel")


def test_admin_cordons_a_gpu_silences_an_alert_and_searches_the_audit_log(served: Served, browser: Any) -> None:
    d = browser
    h = served.headers()
    gpus = httpx.get(f"{served.url}/gpus", headers=h).json()["items"]
    victim = gpus[-1]["uuid"]
    sign_in(d, served.url, "admin")
    d.get(f"{served.url}/console/gpus/{victim}")
    d.find_element(by("id"), "reason").send_keys("fan noise, RMA ticket 42")
    click(d, d.find_element(by("id"), "cordon"))
    assert d.find_element(by("id"), "gpu-health").text == "cordoned"
    d.get(f"{served.url}/console/fleet?health=cordoned")
    assert [c.get_attribute("data-uuid") for c in d.find_elements(by("css"), "#fleet-grid .cell")] == [victim]
    # no job lands on the cordoned GPU, even when every other GPU is taken
    r = httpx.post(f"{served.url}/jobs", headers=h,
                   json={"jobs": [{"name": f"fill-{i}", "gpus": 1, "command": ["sleep", "120"]} for i in range(8)]})
    assert r.status_code == 201, r.text
    filled = r.json()
    try:
        def placed() -> bool:
            js = [httpx.get(f"{served.url}/jobs/{j['id']}", headers=h).json() for j in filled]
            return sum(1 for j in js if j["placement"]) >= 7
        wait_until(placed, 20, "seven jobs placed")
        js = [httpx.get(f"{served.url}/jobs/{j['id']}", headers=h).json() for j in filled]
        assert all(victim not in j["placement"] for j in js)
    finally:
        for j in filled:
            httpx.post(f"{served.url}/jobs/{j['id']}/cancel", headers=h)
    # a GPU falls off the bus: its alert fires, and a silence made in the console mutes it
    lost = gpus[0]["uuid"]
    twin = served.service.source.twin
    twin.inject_fault(lost, "fall_off_bus", at=twin.now + 0.5)

    def alert() -> bool:
        return any(a["labels"].get("uuid") == lost for a in httpx.get(f"{served.url}/alerts", headers=h).json())
    wait_until(alert, 30, "an alert for the lost GPU")
    d.get(f"{served.url}/console/alerts")
    row = next(r for r in d.find_elements(by("css"), "#alerts-table tr") if lost in r.text)
    assert "silenced" not in row.text
    d.find_element(by("id"), "silence-matchers").send_keys(f"uuid={lost}")
    d.find_element(by("css"), "#silence-form input[name=comment]").send_keys("known: RMA")
    click(d, d.find_element(by("id"), "silence-create"))
    assert "created" in d.find_element(by("css"), ".flash").text
    row = next(r for r in d.find_elements(by("css"), "#alerts-table tr") if lost in r.text)
    assert "silenced by" in row.text
    assert len(d.find_elements(by("css"), "#silences-table tr[data-silence]")) == 1
    # the audit log: search for the cordon, see the chain verified, download the CSV
    d.get(f"{served.url}/console/audit")
    assert "Chain verified" in d.find_element(by("id"), "audit-verify").text
    d.find_element(by("id"), "audit-action").send_keys("gpu.cordoned")
    click(d, d.find_element(by("id"), "audit-search"))
    wait_until(lambda: "action=gpu.cordoned" in d.current_url, 10, "the search's results")
    rows = d.find_elements(by("css"), "#audit-table tr.o-success")
    assert len(rows) == 1 and victim in rows[0].text and "admin" in rows[0].text
    d.find_element(by("id"), "audit-csv").click()
    csv_path = Path(d.downloads) / "gpufleet-audit.csv"
    wait_until(csv_path.exists, 10, "the CSV download")
    text = csv_path.read_text()
    assert "gpu.cordoned" in text and "fan noise" in text and "silence.create" not in text


def test_forbidden_actions_posted_directly_are_refused(served: Served) -> None:
    h = served.headers()
    uuid = httpx.get(f"{served.url}/gpus", headers=h).json()["items"][1]["uuid"]
    dev, dev_csrf = login_form_session(served.url, "dev")
    r = dev.post(f"/console/gpus/{uuid}/cordon", data={"csrf": dev_csrf, "reason": "x"})
    assert r.status_code == 403 and "may not" in r.text
    aud, aud_csrf = login_form_session(served.url, "aud")
    r = aud.post("/console/jobs", data={"csrf": aud_csrf, "name": "sneaky", "command": "true"})
    assert r.status_code == 403
    r = aud.post("/console/users", data={"csrf": aud_csrf, "username": "eve", "password": "x" * 12, "role": "admin"})
    assert r.status_code == 403
    # a valid session without the form's CSRF token is refused too, even for an admin's allowed action
    adm, _csrf = login_form_session(served.url, "admin")
    r = adm.post(f"/console/gpus/{uuid}/cordon", data={"reason": "x"})
    assert r.status_code == 403 and "CSRF" in r.text
    assert httpx.get(f"{served.url}/gpus/{uuid}", headers=h).json()["state"] == "ok"
    names = [j["name"] for j in httpx.get(f"{served.url}/jobs", headers=h).json()["items"]]
    assert "sneaky" not in names
    users = [u["username"] for u in httpx.get(f"{served.url}/users", headers=h).json()["items"]]
    assert "eve" not in users
    for c in (dev, aud, adm):
        c.close()
