"""How many upstream attempts each request took: ``requests.attempts``.

The access line and the in-memory recent requests always carried it; the ledger's rows
now do too, so the dashboard's Recent requests shows it with a database as without.
Rows already written were written without it: null (shown as unknown), never a guess.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("requests", sa.Column("attempts", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:  # SQLite: the table copied without it
        batch.drop_column("attempts")
