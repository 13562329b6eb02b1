"""Alembic environment for the service's database: run programmatically by :func:`gpufleet.state.migrate.upgrade`
with an open connection in ``config.attributes["connection"]`` (no alembic.ini, no URL in a file)."""

from __future__ import annotations

from alembic import context

from gpufleet.state.migrate import target_metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand without the service
    raise RuntimeError("run migrations through gpufleet.state.migrate.upgrade (or `gpufleet db upgrade`)")
context.configure(connection=connection, target_metadata=target_metadata(), render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
