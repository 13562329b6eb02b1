"""What every console page shares: the templates, the security headers, the signed-in user's view of a
request (session, permissions, rendering) and the console's shared state."""


from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp

from gpufleet.console.client import ApiCallError, ApiClient, problem_detail
from gpufleet.console.session import COOKIE, Session, Sessions, same_token

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _ts(value: Any) -> str:
    """Unix seconds -> 'YYYY-MM-DD HH:MM:SS' (UTC); '' for none."""
    if value is None or value == "":
        return ""
    try:
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)


templates.env.filters["ts"] = _ts


def console_url(api_url: str) -> str:
    """The console's address for an API base URL (what `serve` prints)."""
    return api_url.rstrip("/") + PREFIX + "/"


class NotSignedIn(Exception):
    pass


class CsrfError(Exception):
    pass


class View:
    """What one console request works with: the signed-in session and the API, as that user."""

    def __init__(self, request: Request, session: Session, sid: str) -> None:
        self.request = request
        self.session = session
        self.sid = sid
        self.console: Console = request.app.state.console

    @property
    def role(self) -> str:
        return self.session.role

    def may(self, method: str, path: str) -> bool:
        """The API's permission matrix (the only authority) for this user's role."""
        return self.role in self.console.matrix().get((method, path), frozenset())

    def require(self, method: str, path: str) -> None:
        if not self.may(method, path):
            raise ApiCallError(403, f"role {self.role!r} may not {method} {path}")

    async def check_csrf(self) -> dict[str, Any]:
        form = await self.request.form()
        if not same_token(self.session.csrf, str(form.get("csrf", ""))):
            raise CsrfError("the form's CSRF token is missing or stale: reload the page and try again")
        return dict(form)

    async def _refresh(self) -> bool:
        r = await self.console.client(self.request).call(
            "POST", "/auth/refresh", json={"refresh_token": self.session.refresh_token})
        if r.status_code != 200:
            return False
        body = r.json()
        self.session.access_token, self.session.refresh_token = body["access_token"], body["refresh_token"]
        self.session.access_expires = time.time() + float(body.get("expires_in", 300))
        return True

    async def raw(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        client = self.console.client(self.request)
        if time.time() > self.session.access_expires - 5 and not await self._refresh():
            self.console.sessions.drop(self.sid)
            raise NotSignedIn()
        r = await client.call(method, path, token=self.session.access_token, params=params, json=json)
        if r.status_code == 401 and await self._refresh():
            r = await client.call(method, path, token=self.session.access_token, params=params, json=json)
        if r.status_code == 401:
            self.console.sessions.drop(self.sid)
            raise NotSignedIn()
        if r.status_code >= 400:
            raise ApiCallError(r.status_code, problem_detail(r))
        return r

    async def api(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        r = await self.raw(method, path, params=params, json=json)
        return r.json() if r.content else None

    def flash(self, text: str, level: str = "ok") -> None:
        self.session.flash.append((level, text))

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        flashes, self.session.flash = self.session.flash, []
        return templates.TemplateResponse(self.request, name, {
            "me": self.session, "may": self.may, "csrf": self.session.csrf, "flashes": flashes,
            "prefix": PREFIX, "path": self.request.url.path, **context}, status_code=status,
            headers={"Cache-Control": "no-store"})


class Console:
    """Shared state: the API app (called in-process) and the session store."""

    def __init__(self, api: ASGIApp, matrix_of: Any, settings_of: Any = dict) -> None:
        self.api = api
        self._matrix_of = matrix_of
        self._settings_of = settings_of
        self.sessions = Sessions()

    def settings(self) -> dict[str, Any]:
        """The service's settings view (secrets masked): where the history store is."""
        settings: dict[str, Any] = self._settings_of() or {}
        return settings

    def matrix(self) -> dict[tuple[str, str], frozenset[str]]:
        matrix: dict[tuple[str, str], frozenset[str]] = self._matrix_of()
        return matrix

    def client(self, request: Request) -> ApiClient:
        return ApiClient(self.api, request.client.host if request.client else "127.0.0.1")


async def view(request: Request) -> View:
    """The signed-in user's view, or NotSignedIn (the page answers with a redirect to the sign-in form)."""
    console: Console = request.app.state.console
    sid = request.cookies.get(COOKIE)
    session = console.sessions.get(sid)
    if session is None or sid is None:
        raise NotSignedIn()
    return View(request, session, sid)


