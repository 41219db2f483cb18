"""The one database of the process: its URL resolved, its engine, its migrations.

``database.url`` is ``sqlite:///<file>`` (a relative file is taken from the config
file's folder; WAL journal, so readers never wait for the ledger's writer) or
``postgresql://...`` for several replicas sharing usage, keys and budgets. Start runs
every Alembic migration not yet applied (the scripts ship in the package, under
``store/migrations``), so an upgrade keeps the data; a database that cannot be opened
or migrated at start is a ``StoreError`` with the reason, and the gateway does not
start. Once serving, a database that goes away is survived: see ``ledger``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from llmgw.config.store import DEFAULT_DATABASE_URL, DatabaseConfig

log = logging.getLogger(__name__)
_MIGRATION_LOCK = 7_401_118  # a PostgreSQL advisory lock id: one replica migrates at a time


class StoreError(Exception):
    """The database cannot be used; the message says which and why (no secret)."""


def resolve_url(url: str, base_dir: str) -> str:
    """The SQLAlchemy URL for ``database.url``: the async driver named, a relative
    SQLite file made absolute from ``base_dir``."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        return "sqlite+aiosqlite:///" + os.path.join(base_dir, path)
    rest = url.split("://", 1)[1]
    return "postgresql+asyncpg://" + rest


def configured(database: DatabaseConfig | None, config_path: str | None) -> str | None:
    """The database this process uses, or None: without a ``database`` section the
    default SQLite file beside the config file (none when there is no file)."""
    if database is None:
        if config_path is None:
            return None
        database = DatabaseConfig(url=DEFAULT_DATABASE_URL)
    if database.url is None:
        return None
    base = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    return resolve_url(database.url, base)


def shown(url: str) -> str:
    """``url`` for a log line or an error: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


# A new SQLite file opened by several processes at once: how often, and how long apart,
# a start tries again while another one holds it (50 x 0.1 s).
_LOCKED_RETRIES = 50
_LOCKED_PAUSE = 0.1


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self.sqlite:
            # The pool's rollback on return, only where a transaction is open (``_reset``).
            options = {"connect_args": {"timeout": 30}, "pool_reset_on_return": None}
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine.pool, "reset", _reset)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def start(self) -> None:
        """Open the database and bring its schema to the latest migration."""
        if self.sqlite:
            folder = os.path.dirname(self.url.split(":///", 1)[1])
            if not os.access(folder or ".", os.W_OK):
                raise StoreError(
                    f"database: cannot write the SQLite file in {folder!r} (read-only folder); "
                    "set database.url to a writable place, or database.url: '' to run "
                    "without a database"
                )
        try:
            await self._migrate()
        except (SQLAlchemyError, OSError) as exc:
            await self.engine.dispose()
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise StoreError(f"database: cannot open {shown(self.url)}: {reason}") from None
        log.info("database %s ready", shown(self.url))

    async def close(self) -> None:
        await self.engine.dispose()

    async def _migrate(self) -> None:
        """``_upgrade`` in one transaction. On SQLite, a new file that another process
        is switching to WAL at this very moment refuses the switch at once ("database
        is locked": SQLite's busy timeout does not cover it), so that is tried again
        for a while; the other process's migration is over in well under a second."""
        for attempt in range(_LOCKED_RETRIES + 1):
            try:
                async with self.engine.begin() as conn:
                    await conn.run_sync(_upgrade)
                return
            except OperationalError as exc:
                locked = self.sqlite and "database is locked" in str(exc.orig)
                if not locked or attempt == _LOCKED_RETRIES:
                    raise
            await asyncio.sleep(_LOCKED_PAUSE)


def _sqlite_pragmas(connection: Any, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: the others may have to wait
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _reset(dbapi_connection: Any, _record: object, state: PoolResetState) -> None:
    """A SQLite connection back in the pool is rolled back only if it holds a
    transaction: after a commit the pool's usual rollback is a no-op that still costs
    a hop to the connection's thread (the ledger and the spend writer each commit four
    times a second). One returned mid-transaction (its task cancelled between the
    statement and the commit) is rolled back as before, so it cannot hold the write lock."""
    if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


def _upgrade(connection: Connection) -> None:
    # Imported here: only a start that opens a database pays for loading Alembic.
    from alembic import command
    from alembic.config import Config

    # Replicas starting together must not both find the schema missing and both create
    # it: the first migrates while the others wait, then find it at head. Both locks are
    # held by the transaction ``Database.start`` opened, which Alembic runs in (it begins
    # none of its own inside an outer one) and which commits when the migration is done.
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
    else:
        # SQLite's own write lock, taken now rather than at the first write: Python's
        # sqlite3 begins no transaction before DDL, so without it every CREATE TABLE
        # commits on its own and two processes race between reading alembic_version and
        # creating the tables. Inside it the whole migration is one transaction (a
        # failure leaves no half schema); the others wait in busy_timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = Config()
    config.set_main_option("script_location", "llmgw.store:migrations")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
