"""The API's relational database (SQLAlchemy): users, sessions, refresh tokens, revoked access tokens,
login counters and the audit log. SQLite by default, PostgreSQL by URL (``postgresql+psycopg://...``)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Integer,
    String,
    Table,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateIndex, CreateTable

from gpufleet.exporter.errors import BackendUnavailable


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_nonce() -> str:
    return secrets.token_hex(16)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    # ids are never recycled: AUTOINCREMENT on SQLite (sqlite_sequence keeps the high-water mark), an
    # identity column on PostgreSQL; the random nonce, carried in every token, binds tokens to this row
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    nonce: Mapped[str] = mapped_column(String(32), default=new_nonce)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuthSession(Base):
    """One login: the refresh-token family and every access token issued from it (claim ``sid``)."""

    __tablename__ = "auth_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class RevokedAccessToken(Base):
    __tablename__ = "revoked_access_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class LoginCounter(Base):
    """Failed-login counters, one row per throttle key (source address, or user at a source address),
    counted in a fixed window by one atomic upsert."""

    __tablename__ = "login_counters"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[float] = mapped_column(Float, index=True)


class AuditRecord(Base):
    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(256), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)  # type: ignore[type-arg]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Database:
    """Engine + session factory. ``url`` is any SQLAlchemy URL; sqlite files get WAL and foreign keys."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, object] = {"future": True, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            from gpufleet.api.private_files import secure_sqlite

            secure_sqlite(url)  # password hashes and audit: the file is 0600 before SQLite creates it
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        try:
            if self.engine.dialect.name == "sqlite":
                _sqlite_users_autoincrement(self.engine)
            Base.metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                _upgrade_auth_tables(conn)
        except OperationalError as exc:
            raise BackendUnavailable(f"database {self.safe_url} is unreachable: {exc.orig}") from None

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        s = self._sessions()
        try:
            yield s
            s.commit()
        except Exception:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit is on disk in the WAL before it returns, so a crash or `kill -9` of the process
    # loses nothing acknowledged; only a power cut may roll back the last commits (never corrupting the
    # file). It skips one fsync per commit (about 4x faster job completions); PostgreSQL for power-loss
    # durability.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _upgrade_auth_tables(conn: Connection) -> None:
    """Bring user/auth tables made by an older version up to date: every user gets its nonce; refresh
    tokens issued before sessions existed carry none and stop working (their users log in again)."""
    columns = {c["name"] for c in inspect(conn).get_columns("users")}
    if "nonce" not in columns:
        conn.execute(text("ALTER TABLE users ADD COLUMN nonce VARCHAR(32)"))
    for (uid,) in conn.execute(text("SELECT id FROM users WHERE nonce IS NULL")).all():
        conn.execute(text("UPDATE users SET nonce = :n WHERE id = :i"), {"n": new_nonce(), "i": uid})
    if "session_id" not in {c["name"] for c in inspect(conn).get_columns("refresh_tokens")}:
        conn.execute(text("ALTER TABLE refresh_tokens ADD COLUMN session_id VARCHAR(32)"))


def _sqlite_users_autoincrement(engine: Engine) -> None:
    """A users table made by an older version without AUTOINCREMENT hands a deleted user's id out again:
    rebuild it with AUTOINCREMENT (rows, ids and foreign keys kept; each user gets its nonce)."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'")).first()
        if row is None or "AUTOINCREMENT" in str(row[0]).upper():
            return
        old = {c["name"] for c in inspect(conn).get_columns("users")}
    table: Table = User.__table__  # type: ignore[assignment]
    cols = [c.name for c in table.columns if c.name in old and c.name != "nonce"]
    nonce = "COALESCE(nonce, lower(hex(randomblob(16))))" if "nonce" in old else "lower(hex(randomblob(16)))"
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        previous = dbapi.isolation_level
        dbapi.isolation_level = None  # the PRAGMAs below only work outside a transaction
        cur = dbapi.cursor()
        # foreign keys off, and the rename must not rewrite the other tables' references to the old name
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.execute("PRAGMA legacy_alter_table=ON")
        try:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("ALTER TABLE users RENAME TO users_before_autoincrement")
            for index in table.indexes:
                cur.execute(f'DROP INDEX IF EXISTS "{index.name}"')
            cur.execute(str(CreateTable(table).compile(engine)))
            for index in table.indexes:
                cur.execute(str(CreateIndex(index).compile(engine)))
            names = ", ".join(f'"{c}"' for c in cols)
            cur.execute(f"INSERT INTO users ({names}, nonce) SELECT {names}, {nonce} FROM users_before_autoincrement")
            cur.execute("DROP TABLE users_before_autoincrement")
            cur.execute("COMMIT")
        except Exception:
            if dbapi.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.execute("PRAGMA legacy_alter_table=OFF")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            dbapi.isolation_level = previous  # back to the pool as SQLAlchemy expects it
    finally:
        raw.close()
