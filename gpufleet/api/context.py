"""Build the API's context from settings: database, signing key, auth, audit log; `gpufleet init`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gpufleet.api.audit import AuditLog
from gpufleet.api.backend import FleetState
from gpufleet.api.db import Database, User
from gpufleet.api.deps import AppContext
from gpufleet.api.security import (
    Auth,
    create_signing_key,
    generate_password,
    hash_password,
    load_signing_key,
    make_hasher,
)
from gpufleet.exporter.errors import ConfigError
from gpufleet.settings import ApiSettings


def database_url(api: ApiSettings, data_dir: Path) -> str:
    return api.database_url or f"sqlite:///{(data_dir / 'gpufleet.db').resolve()}"


def key_path(api: ApiSettings, data_dir: Path) -> Path:
    return api.key_file or data_dir / "secrets" / "jwt.key"


def build_context(api: ApiSettings, data_dir: Path, fleet: FleetState | None = None,
                  settings_view: dict[str, Any] | None = None) -> AppContext:
    db = Database(database_url(api, data_dir))
    db.create_all()
    key = load_signing_key(key_path(api, data_dir))
    auth = Auth(db, key, access_ttl_s=api.access_token_ttl, refresh_ttl_s=api.refresh_token_ttl,
                max_failures=api.login_max_failures, failure_window_s=api.login_failure_window,
                hasher=make_hasher(api.password_hash_time_cost, api.password_hash_memory_kib))
    return AppContext(db=db, auth=auth, audit=AuditLog(db), fleet=fleet or FleetState(), settings=settings_view or {})


@dataclass
class InitResult:
    key_file: Path
    database: str
    admin: str
    password: str | None  # shown once when generated


def initialise(api: ApiSettings, data_dir: Path, admin: str = "admin", password_file: Path | None = None) -> InitResult:
    """Create the data folder, the signing key (0600) and the first admin. Refuses to run twice."""
    data_dir.mkdir(parents=True, exist_ok=True)
    kp = key_path(api, data_dir)
    if kp.exists():
        raise ConfigError(f"{kp} exists: this data folder is initialised already")
    password: str | None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --admin-password-file {password_file}: {exc.strerror}") from None
        shown = None
    else:
        password = generate_password()
        shown = password
    pw_hash = hash_password(password, make_hasher(api.password_hash_time_cost, api.password_hash_memory_kib))
    db = Database(database_url(api, data_dir))
    db.create_all()
    with db.session() as s:
        if s.execute(select(User).where(User.role == "admin")).first() is not None:
            raise ConfigError(f"database {db.safe_url} already has an admin")
        s.add(User(username=admin, password_hash=pw_hash, role="admin"))
    create_signing_key(kp)
    AuditLog(db).append(user="-", role="-", action="init", target=admin, outcome="success", source="cli",
                        detail={"database": db.safe_url})
    db.dispose()
    return InitResult(kp, db.safe_url, admin, shown)
