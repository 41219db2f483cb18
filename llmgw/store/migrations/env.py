"""Alembic's environment: always run from ``llmgw.store.engine.migrate`` on a
connection it hands over (no alembic.ini, no URL here)."""

from __future__ import annotations

from alembic import context

from llmgw.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
