"""The control plane's state in the service's relational database (SQLAlchemy; SQLite by default,
PostgreSQL by URL — the same database as users and audit): the job queue, jobs and their transitions,
allocations, usage, operator overrides, silences and alert state. Row-level writes (``store``), Alembic
migrations run at start (``migrate``), a one-time import of older JSON state files (``legacy``)."""

from __future__ import annotations

import threading
from pathlib import Path

from gpufleet.api.db import Database
from gpufleet.state.store import StateStore

_lock = threading.Lock()
_open: dict[str, StateStore] = {}


def open_state(url: str) -> StateStore:
    """The state store on the database at ``url``, its schema migrated to the latest revision.

    One store (one engine) per URL in a process: the job queue and the alert engine share it."""
    from gpufleet.state.migrate import upgrade

    with _lock:
        store = _open.get(url)
        if store is None:
            db = Database(url)
            if db.engine.dialect.name == "sqlite" and db.engine.url.database not in (None, "", ":memory:"):
                Path(str(db.engine.url.database)).parent.mkdir(parents=True, exist_ok=True)
            upgrade(db)
            store = _open[url] = StateStore(db)
        return store


def close_state(url: str) -> None:
    with _lock:
        store = _open.pop(url, None)
    if store is not None:
        store.db.dispose()


__all__ = ["StateStore", "close_state", "open_state"]
