"""The usage ledger's rows of hedged racers that lost: ``requests.hedge_loser``.

A hedged request's racer that lost after it had begun answering is billed by its
provider; its tokens and cost get a row of their own, flagged so that it is not
counted as a request. Rows already written are requests: false.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column(
        "requests",
        sa.Column("hedge_loser", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # 0001 reads every row as a request: the racers' rows go (their spend with them).
    requests = sa.table("requests", sa.column("hedge_loser", sa.Boolean))
    op.execute(requests.delete().where(requests.c.hedge_loser == sa.true()))
    with op.batch_alter_table("requests") as batch:  # SQLite: the table copied without it
        batch.drop_column("hedge_loser")
