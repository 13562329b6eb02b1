"""Passwords (argon2id), JWT access and refresh tokens (PyJWT), sessions, revocation and login throttling.

Every token names its user by id *and* by the user's random nonce (claim ``unonce``), so a token of a
deleted user never works for a later user, whatever id that one gets; and every token names its session
(claim ``sid``, the refresh-token family), so logout ends the whole session it came from."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gpufleet.api.db import (
    AuthSession,
    Database,
    LoginCounter,
    RefreshToken,
    RevokedAccessToken,
    User,
    utcnow,
)
from gpufleet.api.private_files import read_hex_key
from gpufleet.exporter.errors import ConfigError, GpufleetError

ROLES = ("admin", "developer", "auditor")
ALGORITHM = "HS256"
_hasher = PasswordHasher()  # argon2id, memory-hard; library defaults follow RFC 9106's recommendation


def make_hasher(time_cost: int = 3, memory_cost_kib: int = 65536) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib)


class AuthError(GpufleetError):
    """Credentials or token rejected (maps to 401)."""


class Throttled(GpufleetError):
    """Too many failed logins (maps to 429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    if len(password) < 12:
        raise ConfigError("passwords need at least 12 characters")
    return (hasher or _hasher).hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Verify against a stored hash (its own parameters are encoded in it)."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def create_signing_key(path: Path) -> bytes:
    """Write a new random signing key with file mode 0600 (refuses to overwrite)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(64)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.hex().encode())
    return key


def load_signing_key(path: Path) -> bytes:
    return read_hex_key(path, "signing key", "run `gpufleet init --data-dir DIR` first", "written by `gpufleet init`")


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass
class Principal:
    user_id: int
    username: str
    role: str
    team: str | None
    jti: str
    exp: float
    session_id: str = ""


class Claims(BaseModel):
    """What a token must carry; anything else (a non-integer ``sub``, a list for ``jti``...) is a 401."""

    model_config = ConfigDict(strict=True, extra="ignore")
    sub: str = Field(pattern=r"^[1-9][0-9]{0,17}$")  # a positive 63-bit integer, as text (RFC 7519)
    type: Literal["access", "refresh"]
    jti: str = Field(min_length=1, max_length=64)
    sid: str = Field(min_length=1, max_length=32)
    unonce: str = Field(min_length=1, max_length=32)
    tv: int = Field(ge=0, le=2**31 - 1)
    exp: int | float

    @property
    def user_id(self) -> int:
        return int(self.sub)


def source_key(source: str) -> str:
    """The address a login is throttled by: IPv4 as is, IPv6 by its /64 (one host usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return source[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Auth:
    """Issues, verifies and revokes tokens; throttles logins."""

    def __init__(self, db: Database, key: bytes, access_ttl_s: int = 900, refresh_ttl_s: int = 7 * 86400,
                 max_failures: int = 5, failure_window_s: int = 900, hasher: PasswordHasher | None = None,
                 cache_ttl_s: float = 2.0, max_failures_per_source: int = 50) -> None:
        self.db = db
        self.hasher = hasher or _hasher
        # verified access tokens, so a busy client costs one signature check and no database round trip;
        # this process's revocations drop entries at once, another process's take effect within the TTL
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[Principal, float]] = {}
        self.key = key
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.max_failures = max_failures
        self.max_failures_per_source = max_failures_per_source
        self.failure_window_s = failure_window_s
        _dummy_hash(self.hasher)  # made now, so the first unknown user costs no more than the others

    def hash_password(self, password: str) -> str:
        return hash_password(password, self.hasher)

    def verify_password(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # -- tokens --------------------------------------------------------------------------------------
    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def issue(self, user: User, session_id: str | None = None) -> TokenPair:
        """A token pair for ``user``: a new session, or the next pair of ``session_id`` (refresh)."""
        with self.db.session() as s:
            return self._issue(s, user, session_id)

    def _issue(self, s: Session, user: User, session_id: str | None) -> TokenPair:
        now = int(time.time())
        expires = utcnow() + dt.timedelta(seconds=self.refresh_ttl_s)
        if session_id is None:
            session_id = uuid.uuid4().hex
            s.add(AuthSession(id=session_id, user_id=user.id, expires_at=expires))
        else:
            s.execute(update(AuthSession).where(AuthSession.id == session_id).values(expires_at=expires))
        common = {"sub": str(user.id), "unonce": user.nonce, "tv": user.token_version, "sid": session_id,
                  "iat": now}
        access = self._encode({**common, "name": user.username, "role": user.role, "type": "access",
                               "jti": uuid.uuid4().hex, "exp": now + self.access_ttl_s})
        rjti = uuid.uuid4().hex
        refresh = self._encode({**common, "type": "refresh", "jti": rjti, "exp": now + self.refresh_ttl_s})
        s.add(RefreshToken(jti=rjti, user_id=user.id, session_id=session_id, expires_at=expires))
        return TokenPair(access, refresh, self.access_ttl_s)

    def _decode(self, token: str, kind: str) -> Claims:
        try:
            raw = jwt.decode(token, self.key, algorithms=[ALGORITHM],
                             options={"require": ["exp", "sub", "jti", "type"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if not isinstance(raw, dict) or raw.get("type") != kind:
            raise AuthError(f"a {kind} token is required")
        try:
            return Claims.model_validate(raw)
        except ValidationError as exc:
            bad = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})) or "claims"
            raise AuthError(f"invalid token: malformed claim(s) {bad}") from None

    def cached(self, token: str) -> Principal | None:
        hit = self._cache.get(token)
        if hit is not None and hit[1] > time.monotonic() and hit[0].exp > time.time():
            return hit[0]
        return None

    def authenticate(self, token: str) -> Principal:
        hit = self.cached(token)
        if hit is not None:
            return hit
        principal = self._authenticate(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (principal, time.monotonic() + self.cache_ttl_s)
        return principal

    def _forget(self, *, jti: str | None = None, user_id: int | None = None, session_id: str | None = None) -> None:
        for tok, (p, _) in list(self._cache.items()):
            if p.jti == jti or p.user_id == user_id or (session_id and p.session_id == session_id):
                self._cache.pop(tok, None)

    @staticmethod
    def _check_user(user: User | None, claims: Claims) -> User:
        # the nonce: a row that got a deleted user's id (or name) is another identity
        if user is None or user.disabled or user.nonce != claims.unonce:
            raise AuthError("user no longer exists or is disabled")
        if user.token_version != claims.tv:
            raise AuthError("token revoked (password changed or logged out everywhere)")
        return user

    @staticmethod
    def _check_session(session: AuthSession | None, user: User) -> None:
        if session is None or session.revoked or session.user_id != user.id:
            raise AuthError("session ended (logged out)")

    def _authenticate(self, token: str) -> Principal:
        claims = self._decode(token, "access")
        with self.db.session() as s:
            if s.get(RevokedAccessToken, claims.jti) is not None:
                raise AuthError("token revoked")
            user = self._check_user(s.get(User, claims.user_id), claims)
            self._check_session(s.get(AuthSession, claims.sid), user)
            return Principal(user.id, user.username, user.role, user.team, claims.jti, float(claims.exp), claims.sid)

    def refresh(self, token: str) -> tuple[User, TokenPair]:
        claims = self._decode(token, "refresh")
        with self.db.session() as s:
            # rotation, atomically: of two parallel uses of one refresh token exactly one wins
            used = s.execute(update(RefreshToken).where(
                RefreshToken.jti == claims.jti, RefreshToken.session_id == claims.sid,
                RefreshToken.revoked.is_(False)).values(revoked=True))
            if getattr(used, "rowcount", 0) != 1:
                raise AuthError("refresh token revoked or unknown")
            user = self._check_user(s.get(User, claims.user_id), claims)
            self._check_session(s.get(AuthSession, claims.sid), user)
            pair = self._issue(s, user, claims.sid)
        return user, pair

    def revoke(self, principal: Principal, refresh_token: str | None = None) -> None:
        """Logout: end the session the access token came from (every access and refresh token of its
        family), and the session of ``refresh_token`` too when one of the user's is given."""
        sessions = {principal.session_id} - {""}
        if refresh_token:
            try:
                other = self._decode(refresh_token, "refresh")
                if other.user_id == principal.user_id:
                    sessions.add(other.sid)
            except AuthError:
                pass
        for sid in sessions:
            self._forget(session_id=sid)
        self._forget(jti=principal.jti)
        with self.db.session() as s:
            s.merge(RevokedAccessToken(jti=principal.jti,
                                       expires_at=dt.datetime.fromtimestamp(principal.exp, dt.UTC)))
            if sessions:
                s.execute(update(AuthSession).where(AuthSession.id.in_(sessions),
                                                    AuthSession.user_id == principal.user_id).values(revoked=True))
                s.execute(update(RefreshToken).where(RefreshToken.session_id.in_(sessions),
                                                     RefreshToken.user_id == principal.user_id).values(revoked=True))
            now = utcnow()
            s.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now))
            s.execute(delete(RefreshToken).where(RefreshToken.expires_at < now))
            s.execute(delete(AuthSession).where(AuthSession.expires_at < now))

    def revoke_all(self, user_id: int) -> None:
        """Password change / disable: every token of the user stops working."""
        self._forget(user_id=user_id)
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is not None:
                user.token_version += 1
            s.execute(update(AuthSession).where(AuthSession.user_id == user_id).values(revoked=True))
            s.execute(update(RefreshToken).where(RefreshToken.user_id == user_id).values(revoked=True))

    # -- login ---------------------------------------------------------------------------------------
    def _hit(self, s: Session, key: str, now: float) -> tuple[int, float]:
        """Count one attempt under ``key`` in one atomic statement; returns (count, window start)."""
        fresh = LoginCounter.window_start <= now - self.failure_window_s
        values = {"count": case((fresh, 1), else_=LoginCounter.count + 1),
                  "window_start": case((fresh, now), else_=LoginCounter.window_start)}
        dialect = s.get_bind().dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite_insert if dialect == "sqlite" else pg_insert
            stmt = insert(LoginCounter).values(key=key, count=1, window_start=now).on_conflict_do_update(
                index_elements=[LoginCounter.key], set_=values).returning(LoginCounter.count, LoginCounter.window_start)
            count, start = s.execute(stmt).one()
            return int(count), float(start)
        row = s.get(LoginCounter, key, with_for_update=True)  # other databases: a row lock
        if row is None:
            row = LoginCounter(key=key, count=0, window_start=now)
            s.add(row)
        if row.window_start <= now - self.failure_window_s:
            row.count, row.window_start = 0, now
        row.count += 1
        s.flush()
        return row.count, row.window_start

    @staticmethod
    def _undo(s: Session, key: str) -> None:
        s.execute(update(LoginCounter).where(LoginCounter.key == key, LoginCounter.count > 0)
                  .values(count=LoginCounter.count - 1))

    def _retry(self, start: float, now: float) -> int:
        return max(1, int(start + self.failure_window_s - now) + 1)

    def login(self, username: str, password: str, source: str) -> tuple[User, TokenPair]:
        """Check a password, throttled per source address and per user at that address.

        An attempt is counted (committed) *before* its password is checked and uncounted when it
        succeeds, so parallel attempts cannot check more passwords than the limit. A user locked at one
        address can still log in from others: nobody locks an account out for everyone."""
        now = time.time()
        src = source_key(source)
        src_key, pair_key = f"src:{src}", f"user:{src}:{username}"
        throttled: Throttled | None = None
        with self.db.session() as s:
            n, start = self._hit(s, src_key, now)
            if n > self.max_failures_per_source:
                retry = self._retry(start, now)
                throttled = Throttled(f"too many failed logins from {source}; try again in {retry} s", retry)
            else:
                n, start = self._hit(s, pair_key, now)
                if n > self.max_failures:
                    self._undo(s, src_key)
                    retry = self._retry(start, now)
                    throttled = Throttled(f"too many failed logins for {username!r} from {source}; "
                                          f"try again in {retry} s", retry)
        if throttled is not None:
            raise throttled
        with self.db.session() as s:
            user = s.scalars(select(User).where(User.username == username)).one_or_none()
        # one hash check whatever the case (unknown, disabled or existing user): the same time for each
        verified = self.verify_password(user.password_hash if user is not None else _dummy_hash(self.hasher),
                                        password)
        if user is None or user.disabled or not verified:
            raise AuthError("wrong username or password")
        with self.db.session() as s:
            s.execute(delete(LoginCounter).where(LoginCounter.key == pair_key))
            self._undo(s, src_key)
            # counters whose window has passed count nothing any more (a spray of made-up names leaves many)
            s.execute(delete(LoginCounter).where(LoginCounter.window_start <= now - self.failure_window_s))
        return user, self.issue(user)


_DUMMY: dict[tuple[int, int], str] = {}


def _dummy_hash(hasher: PasswordHasher) -> str:
    key = (hasher.time_cost, hasher.memory_cost)
    if key not in _DUMMY:
        _DUMMY[key] = hasher.hash(secrets.token_urlsafe(16))
    return _DUMMY[key]
