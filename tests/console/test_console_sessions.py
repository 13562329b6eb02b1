"""Console sessions are the API's own tokens in the cookie: a `serve` restart (or another worker on the
same database) keeps a signed-in user signed in, token refresh goes through the API, and the API's rules
end a session: a disabled user is signed out, a signed-out cookie copy is refused."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import Served, form_login, login_form_session, settings_for, start_service

pytestmark = pytest.mark.server


def _page(url: str, cookie: str, path: str = "/console/jobs") -> httpx.Response:
    return httpx.get(f"{url}{path}", headers={"Cookie": f"gpufleet_console={cookie}"})


def _signed_in_as(r: httpx.Response) -> str | None:
    found = re.search(r'id="whoami">([^<]+)<', r.text) if r.status_code == 200 else None
    return found.group(1) if found else None


def _cookie(c: httpx.Client) -> str:
    return str(c.headers["Cookie"]).split("=", 1)[1]


def test_a_restart_keeps_users_signed_in_and_a_disabled_user_is_signed_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    twin = {"nodes": 1, "gpus_per_node": 2}
    first: Served = start_service(settings_for(data, twin))
    try:
        adm, _ = login_form_session(first.url, "admin")
        dev, _ = login_form_session(first.url, "dev")
        aud, aud_csrf = login_form_session(first.url, "aud")
        adm_cookie, dev_cookie, aud_cookie = _cookie(adm), _cookie(dev), _cookie(aud)
        for c in (adm, dev, aud):
            c.close()
        # signing out ends that session on the server: the cookie's copy is refused from now on
        r = httpx.post(f"{first.url}/console/logout", data={"csrf": aud_csrf},
                       headers={"Cookie": f"gpufleet_console={aud_cookie}"})
        assert r.status_code == 303
        assert _page(first.url, aud_cookie).status_code == 303
    finally:
        first.service.stop()
    second = start_service(settings_for(data, twin), users=False)  # the same database, a new process state
    try:
        assert _signed_in_as(_page(second.url, adm_cookie)) == "admin (admin)"
        assert _signed_in_as(_page(second.url, dev_cookie)) == "dev (developer)"
        assert _page(second.url, aud_cookie).status_code == 303  # signed out stays signed out
        # the admin disables the developer through the console: the developer's next page signs them out
        page = _page(second.url, adm_cookie, "/console/users")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        uid = re.search(r'<tr data-user="dev"><td>(\d+)</td>', page.text)
        assert csrf and uid
        r = httpx.post(f"{second.url}/console/users/{uid.group(1)}", data={"csrf": csrf.group(1), "disabled": "1"},
                       headers={"Cookie": f"gpufleet_console={adm_cookie}"})
        assert r.status_code == 303 and r.headers["location"].endswith("/console/users")
        r = _page(second.url, dev_cookie)
        assert r.status_code == 303 and "/console/login" in r.headers["location"]
        assert 'gpufleet_console=""' in r.headers.get("set-cookie", "") or "Max-Age=0" in r.headers.get(
            "set-cookie", "")
        assert _signed_in_as(_page(second.url, adm_cookie)) == "admin (admin)"
    finally:
        second.service.stop()


def test_an_expiring_access_token_is_refreshed_through_the_api(served: Served) -> None:
    auth = served.service.api.server.config.app.state.ctx.auth
    ttl = auth.access_ttl_s
    auth.access_ttl_s = 5  # tokens issued now expire within the console's refresh margin
    try:
        old = form_login(served.url, "dev")
    finally:
        auth.access_ttl_s = ttl
    r = _page(served.url, old)
    assert _signed_in_as(r) == "dev (developer)"
    new = r.cookies.get("gpufleet_console")
    assert new and new != old  # a new pair in the cookie
    r = _page(served.url, new)
    assert _signed_in_as(r) == "dev (developer)" and "gpufleet_console" not in r.cookies  # fresh: no refresh
    audit = httpx.get(f"{served.url}/audit", headers=served.headers(), params={"action": "refresh", "limit": 50})
    assert any(row["user"] == "dev" for row in audit.json()["items"])  # the API did it, audited
