"""Console fixtures: a real `serve` (Service) over the twin, users of every role, one headless Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpufleet.api.context import initialise
from gpufleet.service import Service, build_service
from gpufleet.settings import load_settings
from tests.servers import free_port, require_binary, skip_or_fail, wait_until

PASSWORD = "console-test-password"
USERS = {"admin": "admin", "developer": "dev", "auditor": "aud"}


@dataclass
class Served:
    service: Service
    url: str  # the API's base URL; the console is at url + /console/

    def headers(self, username: str = "admin") -> dict[str, str]:
        r = httpx.post(f"{self.url}/auth/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def settings_for(data: Path, twin: dict[str, Any] | None = None, **api: Any) -> Any:
    return load_settings(None, {
        "data_dir": str(data),
        "exporter": {"source": "twin", "interval": 1, "listen": f"127.0.0.1:{free_port()}"},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1, "password_hash_memory_kib": 8192,
                **api},
        "twin": {"nodes": 2, "gpus_per_node": 4, "seed": 5, "failures": False, **(twin or {})},
    })


def start_service(settings: Any, clock: Callable[[], float] = time.time, users: bool = True) -> Served:
    """`serve` over the twin (the data folder initialised on first use), with a developer and an auditor."""
    data = Path(settings.data_dir)
    if not (data / "pw").exists():
        data.mkdir(parents=True, exist_ok=True)
        (data / "pw").write_text(PASSWORD)
        initialise(settings.api, settings.data_dir, password_file=data / "pw")
    svc = build_service(settings, clock=clock)
    svc.start()
    try:
        svc.loop.wait_cycles(2, timeout=30)
        assert svc.api is not None
        s = Served(svc, svc.api.url)
        if users:
            h = s.headers()
            for role, name in USERS.items():
                if name != "admin":
                    r = httpx.post(f"{s.url}/users", headers=h,
                                   json={"username": name, "password": PASSWORD, "role": role, "team": "ml"})
                    assert r.status_code == 201, r.text
        return s
    except BaseException:
        svc.stop()
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_service(settings_for(tmp_path_factory.mktemp("console") / "data"))
    try:
        yield s
    finally:
        s.service.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    chromium = require_binary("chromium")
    driver_path = require_binary("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        skip_or_fail("selenium is not installed (pip install 'selenium>=4.20,<5')")
        raise
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=opts, service=DriverService(driver_path))
    driver.implicitly_wait(0)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def form_login(url: str, username: str, password: str = PASSWORD) -> str:
    """Sign in through the console's form; the session cookie's value."""
    with httpx.Client(base_url=url) as c:
        page = c.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        r = c.post("/console/login", data={"username": username, "password": password, "csrf": token.group(1)},
                   headers={"Cookie": f"gpufleet_console_login={page.cookies['gpufleet_console_login']}"})
        assert r.status_code == 303, r.text
        return str(r.cookies["gpufleet_console"])


def login_form_session(url: str, username: str) -> tuple[httpx.Client, str]:
    """Sign in through the console's form with httpx (no browser): a client with the session cookie, and
    the session's CSRF token (read from a page). The cookie is Secure, so it is passed by hand over http."""
    c = httpx.Client(base_url=url)
    c.headers["Cookie"] = f"gpufleet_console={form_login(url, username)}"
    page = c.get("/console/jobs")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and found is not None
    return c, found.group(1)


def shots_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "console"


# -- browser helpers ------------------------------------------------------------------------------------
def by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return {"id": By.ID, "css": By.CSS_SELECTOR}[kind]


def click(d: Any, element: Any) -> None:
    """Click something that loads a new page, and wait for the new page (its old <html> goes stale)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    old = d.find_element(By.TAG_NAME, "html")
    element.click()

    def gone() -> bool:
        try:
            old.is_enabled()
        except WebDriverException:  # stale, or no longer in the document
            return True
        return False
    wait_until(gone, 15, "the next page")


def sign_in(d: Any, url: str, username: str, password: str = PASSWORD) -> None:
    d.delete_all_cookies()
    d.get(f"{url}/console/login")
    d.find_element(by("id"), "username").send_keys(username)
    d.find_element(by("id"), "password").send_keys(password)
    click(d, d.find_element(by("id"), "signin"))
    wait_until(lambda: "/console/fleet" in d.current_url, 10, "the fleet page after sign-in")
    assert username in d.find_element(by("id"), "whoami").text


def ids(d: Any, *names: str) -> dict[str, bool]:
    return {n: bool(d.find_elements(by("id"), n)) for n in names}
