"""Build the API's context from settings: database, signing key, auth, audit log; `gpufleet init`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gpufleet.api.audit import AuditAnchor, AuditLog, open_anchor
from gpufleet.api.backend import FleetState
from gpufleet.api.db import Database, User
from gpufleet.api.deps import AppContext
from gpufleet.api.private_files import private_dir, secure_data_dir
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

log = logging.getLogger("gpufleet.api")


def database_url(api: ApiSettings, data_dir: Path) -> str:
    return api.database_url or f"sqlite:///{(data_dir / 'gpufleet.db').resolve()}"


def key_path(api: ApiSettings, data_dir: Path) -> Path:
    return api.key_file or data_dir / "secrets" / "jwt.key"


def audit_key_path(api: ApiSettings, data_dir: Path) -> Path:
    return api.audit_key_file or data_dir / "secrets" / "audit.key"


def checkpoint_path(api: ApiSettings, data_dir: Path) -> Path:
    return api.audit_checkpoint_file or data_dir / "audit" / "checkpoints.jsonl"


def audit_anchor(api: ApiSettings, data_dir: Path, db: Database, *, create: bool = True) -> AuditAnchor:
    """The audit log's key and checkpoint file (the key made, and the log anchored, when missing)."""
    kp, cp = audit_key_path(api, data_dir), checkpoint_path(api, data_dir)
    if create and not kp.exists() and cp.exists():
        log.error("audit key %s is missing but checkpoints %s exist: records and checkpoints signed with the lost "
                  "key will not verify; restore the key from its backup (a new key is made now)", kp, cp)
    return open_anchor(kp, cp, db, interval_s=api.audit_checkpoint_interval, create=create)


@dataclass
class ApiCore:
    """The API's own parts: its database, the token authority and the audit writer."""

    db: Database
    auth: Auth
    audit: AuditLog


def open_api_core(api: ApiSettings, data_dir: Path) -> ApiCore:
    """Database, signing key and audit log of the data folder (the service builds these first, so the
    audit writer can be handed to everything that records state changes)."""
    secure_data_dir(data_dir)  # 0700 / 0600, fixing (with a warning) what an older version left readable
    db = Database(database_url(api, data_dir))
    db.create_all()
    key = load_signing_key(key_path(api, data_dir))
    auth = Auth(db, key, access_ttl_s=api.access_token_ttl, refresh_ttl_s=api.refresh_token_ttl,
                max_failures=api.login_max_failures, failure_window_s=api.login_failure_window,
                max_failures_per_source=api.login_max_failures_per_source,
                hasher=make_hasher(api.password_hash_time_cost, api.password_hash_memory_kib))
    return ApiCore(db, auth, AuditLog(db, audit_anchor(api, data_dir, db)))


def build_context(api: ApiSettings, data_dir: Path, fleet: FleetState | None = None,
                  settings_view: dict[str, Any] | None = None, core: ApiCore | None = None) -> AppContext:
    core = core or open_api_core(api, data_dir)
    return AppContext(db=core.db, auth=core.auth, audit=core.audit, fleet=fleet or FleetState(),
                      settings=settings_view or {}, max_body_bytes=api.max_body_bytes)


@dataclass
class InitResult:
    key_file: Path
    database: str
    admin: str
    password: str | None  # shown once when generated


def initialise(api: ApiSettings, data_dir: Path, admin: str = "admin", password_file: Path | None = None) -> InitResult:
    """Create the data folder, the signing key (0600) and the first admin. Refuses to run twice."""
    secure_data_dir(data_dir)
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
    if kp.parent == data_dir / "secrets":
        private_dir(kp.parent)  # create_signing_key would make it with the umask's mode
    create_signing_key(kp)
    audit = AuditLog(db, audit_anchor(api, data_dir, db))
    audit.append(user="-", role="-", action="init", target=admin, outcome="success", source="cli",
                 detail={"database": db.safe_url})
    audit.checkpoint(force=True)
    db.dispose()
    return InitResult(kp, db.safe_url, admin, shown)
