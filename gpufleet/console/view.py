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
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from gpufleet.api.security import Auth, AuthError, Principal
from gpufleet.console.client import ApiCallError, ApiClient, problem_detail
from gpufleet.console.session import (
    COOKIE,
    FLASH_COOKIE,
    Refreshes,
    Session,
    csrf_token,
    open_flash,
    pack,
    same_token,
    seal_flash,
    unpack,
)

PREFIX = "/console"
REFRESH_BEFORE_S = 15.0  # refresh an access token this close to its expiry, so a page's API calls do not fail
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

    def __init__(self, request: Request, session: Session) -> None:
        self.request = request
        self.session = session
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

    async def raw(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        r = await self.console.client(self.request).call(method, path, token=self.session.access_token,
                                                         params=params, json=json)
        if r.status_code == 401:  # revoked, disabled or expired since this request began
            raise NotSignedIn()
        if r.status_code >= 400:
            raise ApiCallError(r.status_code, problem_detail(r))
        return r

    async def api(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        r = await self.raw(method, path, params=params, json=json)
        return r.json() if r.content else None

    def flash(self, text: str, level: str = "ok") -> None:
        """A message for the next page this browser loads (a signed cookie)."""
        pending: list[tuple[str, str]] = request_bag(self.request).setdefault("console_flash", [])
        pending.append((level, text))
        set_cookie(self.request, FLASH_COOKIE, seal_flash(self.console.key(), pending), max_age=300)

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        flashes = take_flashes(self.request)
        return templates.TemplateResponse(self.request, name, {
            "me": self.session, "may": self.may, "csrf": self.session.csrf, "flashes": flashes,
            "prefix": PREFIX, "path": self.request.url.path, **context}, status_code=status,
            headers={"Cache-Control": "no-store"})


def request_bag(request: Request) -> dict[str, Any]:
    """Per-request values shared by the page and the console's middleware (the ASGI scope's state)."""
    bag: dict[str, Any] = request.scope.setdefault("state", {})
    return bag


def set_cookie(request: Request, key: str, value: str, max_age: int | None = None) -> None:
    """Set a console cookie (Secure, HttpOnly, SameSite=Strict, path /console) on this request's response;
    an empty value deletes it. The console app's middleware writes them (see app.py)."""
    cookies: dict[str, tuple[str, int | None]] = request_bag(request).setdefault("console_cookies", {})
    cookies[key] = (value, max_age)


def apply_cookies(request: Request, response: Any) -> None:
    for key, (value, max_age) in request_bag(request).get("console_cookies", {}).items():
        if value:
            response.set_cookie(key, value, path=PREFIX, httponly=True, secure=True, samesite="strict",
                                max_age=max_age)
        else:
            response.delete_cookie(key, path=PREFIX, httponly=True, secure=True, samesite="strict")


def take_flashes(request: Request) -> list[tuple[str, str]]:
    """The messages the previous request left (its signed cookie, then deleted) and this one's own."""
    console: Console = request.app.state.console
    shown = open_flash(console.key(), request.cookies.get(FLASH_COOKIE))
    pending = request_bag(request).pop("console_flash", [])
    if shown or pending or request.cookies.get(FLASH_COOKIE):
        set_cookie(request, FLASH_COOKIE, "")
    return [*shown, *pending]


class Console:
    """Shared state: the API app (called in-process), its authenticator and the refresh coordinator."""

    def __init__(self, api: ASGIApp, matrix_of: Any, settings_of: Any = dict, auth_of: Any = None) -> None:
        self.api = api
        self._matrix_of = matrix_of
        self._settings_of = settings_of
        self._auth_of = auth_of
        self.refreshes = Refreshes()

    def settings(self) -> dict[str, Any]:
        """The service's settings view (secrets masked): where the history store is."""
        settings: dict[str, Any] = self._settings_of() or {}
        return settings

    def matrix(self) -> dict[tuple[str, str], frozenset[str]]:
        matrix: dict[tuple[str, str], frozenset[str]] = self._matrix_of()
        return matrix

    def auth(self) -> Auth:
        auth: Auth = self._auth_of()
        return auth

    def key(self) -> bytes:
        """The API's signing key: the console's CSRF and flash MACs are derived from it."""
        return self.auth().key

    def client(self, request: Request) -> ApiClient:
        return ApiClient(self.api, request.client.host if request.client else "127.0.0.1")

    async def _principal(self, access_token: str) -> Principal | None:
        auth = self.auth()
        hit = auth.cached(access_token)
        if hit is not None:
            return hit
        try:  # a database read: off the event loop, as the API's own (sync) routes are
            return await run_in_threadpool(auth.authenticate, access_token)
        except AuthError:
            return None

    async def _refresh(self, request: Request, refresh_token: str) -> tuple[str, str] | None:
        async def call(token: str) -> tuple[str, str] | None:
            r = await self.client(request).call("POST", "/auth/refresh", json={"refresh_token": token})
            if r.status_code != 200:
                return None
            body = r.json()
            return str(body["access_token"]), str(body["refresh_token"])
        return await self.refreshes.refresh(refresh_token, call)

    async def session(self, request: Request) -> Session | None:
        """The request's signed-in user, authenticated as the API authenticates (expiry, revocation,
        logout, disabled user); an access token that expired or expires within REFRESH_BEFORE_S is refreshed
        through the API (the new pair goes back in the cookie). None: not signed in."""
        pair = unpack(request.cookies.get(COOKIE))
        if pair is None:
            return None
        access, refresh = pair
        principal = await self._principal(access)
        if principal is None or principal.exp - time.time() < REFRESH_BEFORE_S:
            new = await self._refresh(request, refresh)
            if new is None:
                if principal is None:
                    return None
            else:
                access, refresh = new
                principal = await self._principal(access)
                if principal is None:
                    return None
                set_cookie(request, COOKIE, pack(access, refresh))
        return Session(username=principal.username, role=principal.role, user_id=principal.user_id,
                       session_id=principal.session_id, access_token=access, refresh_token=refresh,
                       csrf=csrf_token(self.key(), principal.session_id))


async def view(request: Request) -> View:
    """The signed-in user's view, or NotSignedIn (the page answers with a redirect to the sign-in form)."""
    console: Console = request.app.state.console
    session = await console.session(request)
    if session is None:
        raise NotSignedIn()
    v = View(request, session)
    request_bag(request)["console_view"] = v
    return v
