"""The SQLite engine's pool: a connection goes back rolled back only when it must."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from llmgw.store import budgets
from llmgw.store.engine import Database
from llmgw.store.tables import budget_spend


def _count_rollbacks(driver: Any) -> list[int]:
    """Count the rollbacks the pool asks of ``driver`` (an aiosqlite connection)."""
    calls: list[int] = []
    real = driver.rollback

    async def rollback() -> None:
        calls.append(1)
        await real()

    driver.rollback = rollback
    return calls


async def test_a_committed_write_goes_back_to_the_pool_without_a_rollback(
    tmp_path: Path,
) -> None:
    """Each quarter-second write (ledger, budget spend) commits; the rollback the pool
    used to add on return was a no-op that cost a trip to the connection's thread."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    await db.start()
    try:
        async with db.engine.connect() as conn:  # the pool's one idle connection, after
            driver = (await conn.get_raw_connection()).driver_connection
        rollbacks = _count_rollbacks(driver)
        await budgets.add_spend(db, {("2026-12", "key:a"): (5, 7)})
        assert rollbacks == []
        assert await budgets.spent(db, [("2026-12", "key:a")]) == {("2026-12", "key:a"): (5, 7)}
    finally:
        await db.close()


async def test_a_connection_returned_mid_transaction_is_still_rolled_back(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    await db.start()
    try:
        conn = await db.engine.connect()
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute(  # begins a transaction the engine knows nothing of
            "INSERT INTO budget_spend (scope, period, spent_nano_usd, reserved_nano_usd,"
            " tokens, reserved_tokens) VALUES ('key:b', '2026-12', 1, 0, 1, 0)"
        )
        assert driver.in_transaction
        await conn.close()
        assert not driver.in_transaction  # rolled back: the write lock is free again
        async with db.engine.connect() as other:
            count = await other.scalar(select(func.count()).select_from(budget_spend))
        assert count == 0
    finally:
        await db.close()
