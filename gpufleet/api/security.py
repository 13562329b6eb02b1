"""Passwords (argon2id), JWT access and refresh tokens (PyJWT), revocation and login throttling."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select

from gpufleet.api.db import Database, LoginFailure, RefreshToken, RevokedAccessToken, User, utcnow
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
    try:
        raw = path.read_bytes().strip()
    except FileNotFoundError:
        raise ConfigError(f"signing key {path} does not exist: run `gpufleet init --data-dir DIR` first") from None
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"signing key {path} is readable by group or others: chmod 600 {path}")
    try:
        key = bytes.fromhex(raw.decode())
    except ValueError:
        raise ConfigError(f"signing key {path} is not a hex key written by `gpufleet init`") from None
    if len(key) < 32:
        raise ConfigError(f"signing key {path} is shorter than 256 bits")
    return key


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


class Auth:
    """Issues, verifies and revokes tokens; throttles logins."""

    def __init__(self, db: Database, key: bytes, access_ttl_s: int = 900, refresh_ttl_s: int = 7 * 86400,
                 max_failures: int = 5, failure_window_s: int = 900, hasher: PasswordHasher | None = None,
                 cache_ttl_s: float = 2.0) -> None:
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
        self.failure_window_s = failure_window_s

    def hash_password(self, password: str) -> str:
        return hash_password(password, self.hasher)

    # -- tokens --------------------------------------------------------------------------------------
    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def issue(self, user: User) -> TokenPair:
        now = int(time.time())
        access = self._encode({"sub": str(user.id), "name": user.username, "role": user.role, "tv": user.token_version,
                               "type": "access", "jti": uuid.uuid4().hex, "iat": now, "exp": now + self.access_ttl_s})
        rjti = uuid.uuid4().hex
        refresh = self._encode({"sub": str(user.id), "tv": user.token_version, "type": "refresh", "jti": rjti,
                                "iat": now, "exp": now + self.refresh_ttl_s})
        with self.db.session() as s:
            s.add(RefreshToken(jti=rjti, user_id=user.id,
                               expires_at=utcnow() + dt.timedelta(seconds=self.refresh_ttl_s)))
        return TokenPair(access, refresh, self.access_ttl_s)

    def _decode(self, token: str, kind: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self.key, algorithms=[ALGORITHM],
                                options={"require": ["exp", "sub", "jti", "type"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if claims.get("type") != kind:
            raise AuthError(f"a {kind} token is required")
        return claims

    def authenticate(self, token: str) -> Principal:
        hit = self._cache.get(token)
        now = time.monotonic()
        if hit is not None and hit[1] > now and hit[0].exp > time.time():
            return hit[0]
        principal = self._authenticate(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (principal, now + self.cache_ttl_s)
        return principal

    def _forget(self, *, jti: str | None = None, user_id: int | None = None) -> None:
        for tok, (p, _) in list(self._cache.items()):
            if p.jti == jti or p.user_id == user_id:
                self._cache.pop(tok, None)

    def _authenticate(self, token: str) -> Principal:
        claims = self._decode(token, "access")
        with self.db.session() as s:
            if s.get(RevokedAccessToken, claims["jti"]) is not None:
                raise AuthError("token revoked")
            user = s.get(User, int(claims["sub"]))
            if user is None or user.disabled:
                raise AuthError("user no longer exists or is disabled")
            if user.token_version != claims.get("tv"):
                raise AuthError("token revoked (password changed or logged out everywhere)")
            return Principal(user.id, user.username, user.role, user.team, claims["jti"], float(claims["exp"]))

    def refresh(self, token: str) -> tuple[User, TokenPair]:
        claims = self._decode(token, "refresh")
        with self.db.session() as s:
            row = s.get(RefreshToken, claims["jti"])
            if row is None or row.revoked:
                raise AuthError("refresh token revoked or unknown")
            row.revoked = True  # rotation: each refresh token works once
            user = s.get(User, int(claims["sub"]))
            if user is None or user.disabled or user.token_version != claims.get("tv"):
                raise AuthError("refresh token no longer valid")
        return user, self.issue(user)

    def revoke(self, principal: Principal, refresh_token: str | None = None) -> None:
        """Logout: revoke this access token and (if given) its refresh token."""
        self._forget(jti=principal.jti)
        with self.db.session() as s:
            s.merge(RevokedAccessToken(jti=principal.jti,
                                       expires_at=dt.datetime.fromtimestamp(principal.exp, dt.UTC)))
            if refresh_token:
                try:
                    claims = jwt.decode(refresh_token, self.key, algorithms=[ALGORITHM])
                    row = s.get(RefreshToken, claims.get("jti"))
                    if row is not None and row.user_id == principal.user_id:
                        row.revoked = True
                except jwt.InvalidTokenError:
                    pass
            s.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < utcnow()))

    def revoke_all(self, user_id: int) -> None:
        """Password change / disable: every token of the user stops working."""
        self._forget(user_id=user_id)
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is not None:
                user.token_version += 1
            for row in s.execute(select(RefreshToken).where(RefreshToken.user_id == user_id)).scalars():
                row.revoked = True

    # -- login ---------------------------------------------------------------------------------------
    def login(self, username: str, password: str, source: str) -> tuple[User, TokenPair]:
        now = time.time()
        with self.db.session() as s:
            since = now - self.failure_window_s
            failures = s.execute(select(func.count()).select_from(LoginFailure).where(
                LoginFailure.username == username, LoginFailure.at >= since)).scalar_one()
            if failures >= self.max_failures:
                oldest = s.execute(select(func.min(LoginFailure.at)).where(
                    LoginFailure.username == username, LoginFailure.at >= since)).scalar_one()
                retry = int(oldest + self.failure_window_s - now) + 1
                raise Throttled(f"too many failed logins for {username!r}; try again in {retry} s", retry)
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            ok = user is not None and not user.disabled and verify_password(user.password_hash, password)
            if not ok:
                if user is None:
                    verify_password(_dummy_hash(self.hasher), password)  # same work whether or not the user exists
                s.add(LoginFailure(username=username, source=source, at=now))
        if not ok or user is None:
            raise AuthError("wrong username or password")
        with self.db.session() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.username == username))
        return user, self.issue(user)


_DUMMY: dict[tuple[int, int], str] = {}


def _dummy_hash(hasher: PasswordHasher) -> str:
    key = (hasher.time_cost, hasher.memory_cost)
    if key not in _DUMMY:
        _DUMMY[key] = hasher.hash("gpufleet-timing-equaliser")
    return _DUMMY[key]
