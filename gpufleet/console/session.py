"""Server-side console sessions: a random id in a Secure, HttpOnly, SameSite=Strict cookie; the API's
tokens and the CSRF token stay on the server (only a hash of the id is kept as the key)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

COOKIE = "gpufleet_console"
LOGIN_CSRF_COOKIE = "gpufleet_console_login"
MAX_SESSIONS = 10_000


@dataclass
class Session:
    username: str
    role: str
    access_token: str
    refresh_token: str
    access_expires: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    flash: list[tuple[str, str]] = field(default_factory=list)  # (level, text), shown once
    last_seen: float = field(default_factory=time.time)


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    """In-memory, bounded (least recently used out first); sessions end with the API's refresh token."""

    def __init__(self, idle_s: float = 86400.0, limit: int = MAX_SESSIONS) -> None:
        self.idle_s = idle_s
        self.limit = limit
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Session] = OrderedDict()

    def create(self, session: Session) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._items[_key(sid)] = session
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 100:
            return None
        now = time.time()
        with self._lock:
            key = _key(sid)
            s = self._items.get(key)
            if s is None:
                return None
            if now - s.last_seen > self.idle_s:
                del self._items[key]
                return None
            s.last_seen = now
            self._items.move_to_end(key)
            return s

    def drop(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            return self._items.pop(_key(sid), None)


def same_token(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
