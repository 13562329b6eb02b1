"""Console sessions without server-side session state: the browser's cookie carries the API's own token
pair (signed JWTs), so a session survives a `serve` restart and works on every worker of one database,
and the API's rules stay the only authority: every request authenticates the access token the way the
API does (signature, expiry, revocation, logout, disabled user, password change), and an expired one is
exchanged through the API's own ``/auth/refresh`` (rotation, audit). The cookie is ``Secure``,
``HttpOnly`` and ``SameSite=Strict``; the CSRF token is an HMAC of the API session id (stable across
restarts and token refreshes, new at every sign-in); a flash message rides in a signed, short-lived
cookie to the next page."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

COOKIE = "gpufleet_console"
FLASH_COOKIE = "gpufleet_console_flash"
LOGIN_CSRF_COOKIE = "gpufleet_console_login"
_SEP = "~"  # never in a JWT (base64url and dots)
_MAX_COOKIE = 3800
REFRESH_GRACE_S = 60.0


@dataclass
class Session:
    """The signed-in user as the API authenticated this request's token."""

    username: str
    role: str
    user_id: int
    session_id: str  # the API's session (refresh-token family)
    access_token: str
    refresh_token: str
    csrf: str


def pack(access_token: str, refresh_token: str) -> str:
    return f"{access_token}{_SEP}{refresh_token}"


def unpack(value: str | None) -> tuple[str, str] | None:
    if not value or len(value) > _MAX_COOKIE or value.count(_SEP) != 1:
        return None
    access, refresh = value.split(_SEP)
    return (access, refresh) if access and refresh else None


def _derive(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, f"gpufleet-console:{purpose}".encode(), hashlib.sha256).digest()


def csrf_token(key: bytes, session_id: str) -> str:
    return hmac.new(_derive(key, "csrf"), session_id.encode(), hashlib.sha256).hexdigest()


def seal_flash(key: bytes, flashes: list[tuple[str, str]]) -> str:
    """Flash messages for the next page: base64url(JSON) and its HMAC (nobody else can plant text)."""
    body = base64.urlsafe_b64encode(json.dumps([[lv, tx[:500]] for lv, tx in flashes[-5:]]).encode()).decode().rstrip("=")
    mac = hmac.new(_derive(key, "flash"), body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{mac}"


def open_flash(key: bytes, value: str | None) -> list[tuple[str, str]]:
    if not value or "." not in value or len(value) > _MAX_COOKIE:
        return []
    body, mac = value.rsplit(".", 1)
    if not same_token(hmac.new(_derive(key, "flash"), body.encode(), hashlib.sha256).hexdigest()[:32], mac):
        return []
    try:
        items = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return [(str(lv), str(tx)) for lv, tx in items][:5]
    except (ValueError, TypeError):
        return []


class Refreshes:
    """Serialises token refreshes in this process and remembers each for a minute, so parallel requests
    carrying the same expired pair (a page and its log follower) share one rotation instead of the
    second one finding its refresh token used (which the API treats as revoked)."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._recent: dict[str, tuple[float, tuple[str, str]]] = {}

    async def refresh(self, refresh_token: str,
                      call: Callable[[str], Awaitable[tuple[str, str] | None]]) -> tuple[str, str] | None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        async with self._lock:
            now = time.monotonic()
            for k, (at, _) in list(self._recent.items()):
                if now - at > REFRESH_GRACE_S:
                    del self._recent[k]
            hit = self._recent.get(key)
            if hit is not None:
                return hit[1]
            pair = await call(refresh_token)
            if pair is not None:
                self._recent[key] = (now, pair)
            return pair


def same_token(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
