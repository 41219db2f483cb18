"""The first schema: usage ledger, managed keys, counters, budget spend and alerts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "requests",
        _id(),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("key", sa.String(200)),
        sa.Column("budget_key", sa.String(200)),
        sa.Column("model", sa.String(300)),
        sa.Column("provider", sa.String(200)),
        sa.Column("upstream_model", sa.String(300)),
        sa.Column("endpoint", sa.String(40)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("cache", sa.String(10)),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_nano_usd", sa.BigInteger),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("error", sa.String(200)),
        sa.Column("tags", sa.JSON),
    )
    op.create_index("ix_requests_ts", "requests", ["ts"])
    op.create_index("ix_requests_key_ts", "requests", ["key", "ts"])
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("models", sa.JSON),
        sa.Column("limits", sa.JSON),
        sa.Column("budget", sa.JSON),
        sa.Column("expires_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("cache_refresh", sa.Boolean, nullable=False),
    )
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "keys_version", "value": 0}])
    op.create_table(
        "budget_spend",
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("spent_nano_usd", sa.BigInteger, nullable=False),
        sa.Column("reserved_nano_usd", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("reserved_tokens", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "budget_alerts",
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("fraction", sa.String(10), primary_key=True),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text),
    )


def downgrade() -> None:
    for table in ("budget_alerts", "budget_spend", "counters", "api_keys", "requests"):
        op.drop_table(table)
