"""The console's account and admin pages in a real browser on a real `serve` over the twin: password
change, silences extended and expired, users created / re-roled / disabled (and refused to the other
roles, in the page and on the server), and the capacity page with and without a plan."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.console.conftest import PASSWORD, Served, by, click, login_form_session, sign_in
from tests.servers import wait_until

pytestmark = pytest.mark.server
NEW_PASSWORD = "a-brand-new-password-42"


def _flash(d: Any) -> str:
    return " ".join(e.text for e in d.find_elements(by("css"), ".flash"))


def _try_sign_in(d: Any, url: str, username: str, password: str) -> None:
    d.delete_all_cookies()
    d.get(f"{url}/console/login")
    d.find_element(by("id"), "username").send_keys(username)
    d.find_element(by("id"), "password").send_keys(password)
    click(d, d.find_element(by("id"), "signin"))


def test_password_change_ends_the_session_and_only_the_new_password_works(served: Served, browser: Any) -> None:
    d = browser
    r = httpx.post(f"{served.url}/users", headers=served.headers(),
                   json={"username": "pat", "password": PASSWORD, "role": "developer", "team": "ml"})
    assert r.status_code == 201, r.text
    sign_in(d, served.url, "pat")
    old_cookie = d.get_cookie("gpufleet_console")["value"]
    click(d, d.find_element(by("id"), "nav-password"))
    form = d.find_element(by("id"), "password-form")
    # a wrong current password: refused, and still signed in
    form.find_element(by("css"), "input[name=current_password]").send_keys("not-my-password-at-all")
    form.find_element(by("css"), "input[name=new_password]").send_keys(NEW_PASSWORD)
    form.find_element(by("css"), "input[name=repeat_password]").send_keys(NEW_PASSWORD)
    click(d, form.find_element(by("css"), "button[type=submit]"))
    assert "/console/password" in d.current_url and "current password is wrong" in _flash(d)
    assert "pat" in d.find_element(by("id"), "whoami").text
    form = d.find_element(by("id"), "password-form")
    form.find_element(by("css"), "input[name=current_password]").send_keys(PASSWORD)
    form.find_element(by("css"), "input[name=new_password]").send_keys(NEW_PASSWORD)
    form.find_element(by("css"), "input[name=repeat_password]").send_keys(NEW_PASSWORD)
    click(d, form.find_element(by("css"), "button[type=submit]"))
    assert "/console/login" in d.current_url and "Password changed" in _flash(d)
    # the session that changed it is over, a copy of its cookie too
    r = httpx.get(f"{served.url}/console/jobs", headers={"Cookie": f"gpufleet_console={old_cookie}"})
    assert r.status_code == 303 and "/console/login" in r.headers["location"]
    _try_sign_in(d, served.url, "pat", PASSWORD)
    assert "password" in d.find_element(by("id"), "login-error").text.lower()
    sign_in(d, served.url, "pat", NEW_PASSWORD)


def test_admin_extends_and_expires_a_silence(served: Served, browser: Any) -> None:
    d = browser
    h = served.headers()
    sign_in(d, served.url, "admin")
    d.get(f"{served.url}/console/alerts")
    d.find_element(by("id"), "silence-matchers").send_keys("alertname=GpuTooHot, node=~node-1.*")
    d.find_element(by("css"), "#silence-form input[name=hours]").clear()
    d.find_element(by("css"), "#silence-form input[name=hours]").send_keys("1")
    d.find_element(by("css"), "#silence-form input[name=comment]").send_keys("maintenance window")
    click(d, d.find_element(by("id"), "silence-create"))
    (old,) = httpx.get(f"{served.url}/silences", headers=h).json()
    assert abs(old["ends_at"] - (time.time() + 3600)) < 120
    row = d.find_element(by("css"), f"#silences-table tr[data-silence='{old['id']}']")
    click(d, row.find_element(by("css"), "button.extend"))  # +2 h
    assert "extended" in _flash(d)
    (new,) = httpx.get(f"{served.url}/silences", headers=h).json()
    assert new["id"] != old["id"] and new["matchers"] == old["matchers"] and new["comment"] == old["comment"]
    assert abs(new["ends_at"] - (old["ends_at"] + 2 * 3600)) < 120
    rows = d.find_elements(by("css"), "#silences-table tr[data-silence]")
    assert [r.get_attribute("data-silence") for r in rows] == [new["id"]]
    # a developer sees the silence but no control, and the server refuses the posts anyway
    dev, dev_csrf = login_form_session(served.url, "dev")
    page = dev.get("/console/alerts").text
    assert new["id"] in page and "button.extend" not in page and 'class="extend"' not in page
    assert 'class="expire"' not in page
    for action in ("extend", "expire"):
        r = dev.post(f"/console/silences/{new['id']}/{action}", data={"csrf": dev_csrf, "hours": "2"})
        assert r.status_code == 403, (action, r.status_code)
    dev.close()
    assert [s["id"] for s in httpx.get(f"{served.url}/silences", headers=h).json()] == [new["id"]]
    d.get(f"{served.url}/console/alerts")
    row = d.find_element(by("css"), f"#silences-table tr[data-silence='{new['id']}']")
    click(d, row.find_element(by("css"), "button.expire"))
    assert "expired" in _flash(d)
    assert not d.find_elements(by("css"), "#silences-table tr[data-silence]")
    assert httpx.get(f"{served.url}/silences", headers=h).json() == []


def _user(served: Served, name: str) -> dict[str, Any]:
    items = httpx.get(f"{served.url}/users", headers=served.headers(), params={"limit": 500}).json()["items"]
    return next(u for u in items if u["username"] == name)


def test_admin_creates_re_roles_and_disables_a_user_others_cannot(served: Served, browser: Any) -> None:
    d = browser
    sign_in(d, served.url, "admin")
    click(d, d.find_element(by("id"), "nav-users"))
    form = d.find_element(by("id"), "user-form")
    form.find_element(by("css"), "input[name=username]").send_keys("newbie")
    form.find_element(by("css"), "input[name=password]").send_keys(PASSWORD)
    form.find_element(by("css"), "input[name=team]").send_keys("vision")
    click(d, d.find_element(by("id"), "user-create"))
    assert "User newbie created (developer)" in _flash(d)
    row = d.find_element(by("css"), "#users-table tr[data-user=newbie]")
    assert row.find_element(by("css"), ".role").text == "developer"
    assert row.find_element(by("css"), ".status").text == "active"
    u = _user(served, "newbie")
    assert (u["role"], u["team"], u["disabled"]) == ("developer", "vision", False)
    # change the role
    from selenium.webdriver.support.ui import Select

    Select(row.find_element(by("css"), "select.role-select")).select_by_visible_text("auditor")
    click(d, row.find_element(by("css"), "button.set-role"))
    row = d.find_element(by("css"), "#users-table tr[data-user=newbie]")
    assert row.find_element(by("css"), ".role").text == "auditor" and _user(served, "newbie")["role"] == "auditor"
    # the other roles: no control in the page, and the server refuses a direct post
    aud, aud_csrf = login_form_session(served.url, "aud")
    page = aud.get("/console/users")
    assert page.status_code == 200 and "newbie" in page.text
    assert 'id="user-form"' not in page.text and 'class="set-role"' not in page.text and 'class="toggle"' not in page.text
    uid = u["id"]
    for data in ({"role": "admin"}, {"disabled": "1"}):
        r = aud.post(f"/console/users/{uid}", data={"csrf": aud_csrf, **data})
        assert r.status_code == 403, data
    r = aud.post("/console/users", data={"csrf": aud_csrf, "username": "mallory", "password": PASSWORD,
                                         "role": "admin"})
    assert r.status_code == 403
    dev, dev_csrf = login_form_session(served.url, "dev")
    assert dev.get("/console/users").status_code == 403
    assert dev.post(f"/console/users/{uid}", data={"csrf": dev_csrf, "role": "admin"}).status_code == 403
    for c in (aud, dev):
        c.close()
    u = _user(served, "newbie")
    assert (u["role"], u["disabled"]) == ("auditor", False)
    assert all(x["username"] != "mallory" for x in
               httpx.get(f"{served.url}/users", headers=served.headers()).json()["items"])
    # disable: the user's console session ends and signing in is refused
    sess, _ = login_form_session(served.url, "newbie")
    row = d.find_element(by("css"), "#users-table tr[data-user=newbie]")
    click(d, row.find_element(by("css"), "button.toggle"))
    row = d.find_element(by("css"), "#users-table tr[data-user=newbie]")
    assert row.find_element(by("css"), ".status").text == "disabled" and _user(served, "newbie")["disabled"]
    wait_until(lambda: sess.get("/console/jobs").status_code == 303, 10, "the disabled user's session to end")
    sess.close()
    _try_sign_in(d, served.url, "newbie", PASSWORD)
    assert d.find_elements(by("id"), "login-error")


def test_capacity_page_shows_the_latest_plan_per_gpu_type_or_says_there_is_none(served: Served,
                                                                                browser: Any) -> None:
    import numpy as np
    import pandas as pd
    from gpufleet.allocator.planner import pricebook
    from gpufleet.allocator.planner.fleet import plan_service

    d = browser
    sign_in(d, served.url, "aud")
    click(d, d.find_element(by("id"), "nav-capacity"))
    assert d.find_elements(by("id"), "no-plan") and not d.find_elements(by("id"), "plan-by-type")
    # the real planner on 30 days of hourly demand (the service itself needs days of history first)
    fleet = served.service.fleet
    idx = pd.date_range(end=pd.Timestamp.now(tz="UTC").floor("h"), periods=30 * 24, freq="h")
    demand = pd.Series(3 + 2 * np.sin(np.arange(len(idx)) * 2 * np.pi / 24), index=idx)
    models = [dev.model for dev in fleet.devices.values()]
    fleet.plan = plan_service(pricebook.load(None), models, [], demand, time.time(), n=50)
    by_type = fleet.plan["recommendation"]["by_type"]
    assert by_type
    d.refresh()
    rows = d.find_elements(by("css"), "#plan-by-type tr[data-type]")
    assert sorted(r.get_attribute("data-type") for r in rows) == sorted(by_type)
    for r in rows:
        want = by_type[r.get_attribute("data-type")]
        assert r.find_element(by("css"), ".reserved").text == str(want["reserved"])
        assert r.find_element(by("css"), ".term").text == want["term"]
    assert not d.find_elements(by("id"), "no-plan")
    assert "unmet GPU-hours" in d.find_element(by("id"), "plan-table").text
    fleet.plan = {}
    d.refresh()
    assert d.find_elements(by("id"), "no-plan")
