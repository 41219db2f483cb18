"""The tables, as the latest migration leaves them (queries are written against these)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

# One row per client request (the usage ledger), and one more per hedged racer that
# lost after it had begun answering (``hedge_loser``): its tokens and cost, under the
# request's id, key, model and tags, its own provider; no request of its own.
requests = Table(
    "requests",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(200), nullable=False),
    Column("ts", Float, nullable=False),  # epoch seconds, when it ended
    Column("day", String(10), nullable=False),  # YYYY-MM-DD, UTC
    Column("key", String(200)),
    Column("budget_key", String(200)),
    Column("model", String(300)),
    Column("provider", String(200)),
    Column("upstream_model", String(300)),
    Column("endpoint", String(40)),
    Column("status", Integer, nullable=False),
    Column("cache", String(10)),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("cost_nano_usd", BigInteger),  # null: no price known
    Column("latency_ms", Float, nullable=False),
    Column("error", String(200)),
    Column("tags", JSON),
    Column("hedge_loser", Boolean, nullable=False, default=False, server_default=false()),
    Column("attempts", Integer),  # upstream attempts; null in rows from before 0003
    Index("ix_requests_ts", "ts"),
    Index("ix_requests_key_ts", "key", "ts"),
)

# Keys created over the admin API; the key itself is never stored.
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("models", JSON),
    Column("limits", JSON),
    Column("budget", JSON),
    Column("expires_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("cache_refresh", Boolean, nullable=False, default=False),
)

# Counters that every replica reads, such as the managed keys' version.
counters = Table(
    "counters",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Spend per budget scope and calendar month (UTC), with what admitted requests reserved.
budget_spend = Table(
    "budget_spend",
    metadata,
    Column("scope", String(300), primary_key=True),
    Column("period", String(7), primary_key=True),  # YYYY-MM
    Column("spent_nano_usd", BigInteger, nullable=False, default=0),
    Column("reserved_nano_usd", BigInteger, nullable=False, default=0),
    Column("tokens", BigInteger, nullable=False, default=0),
    Column("reserved_tokens", BigInteger, nullable=False, default=0),
)

# Alerts fired, once per scope, period and fraction across every replica.
budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("scope", String(300), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("fraction", String(10), primary_key=True),
    Column("fired_at", Float, nullable=False),
    Column("detail", Text),
)
