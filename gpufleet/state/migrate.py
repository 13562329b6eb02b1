"""Schema migrations (Alembic) for the service's database: users and audit (``gpufleet.api.db``) and the
control-plane state (``gpufleet.state.models``). ``gpufleet serve`` runs :func:`upgrade` at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gpufleet.api.db import Base, Database
from gpufleet.exporter.errors import BackendUnavailable
from gpufleet.state.models import StateBase

MIGRATIONS = Path(__file__).parent / "migrations"


def target_metadata() -> list[MetaData]:
    """Every table the migrations manage (compare the migrated schema against these)."""
    return [Base.metadata, StateBase.metadata]


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database's schema to ``revision`` (idempotent; one transaction)."""
    cfg = _config()
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except OperationalError as exc:
        raise BackendUnavailable(f"database {db.safe_url} is unreachable: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise BackendUnavailable(f"database {db.safe_url}: schema migration failed: {exc}") from None
