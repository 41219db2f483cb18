"""The database (SPEC §11): the usage ledger, managed keys and budgets, behind
SQLAlchemy's async Core (SQLite through aiosqlite, PostgreSQL through asyncpg), with
its schema kept by Alembic migrations that run at start."""
