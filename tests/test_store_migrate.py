"""Replicas starting at once on one fresh database all come up, the schema at head."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.redis_server import ROOT

# One process of several: it migrates each fresh file when told to (a line on stdin,
# sent to all of them at once), and says how that went.
_REPLICA = """
import asyncio, sys
from llmgw.store.engine import Database, StoreError

async def main():
    print("ready", flush=True)
    for line in sys.stdin:
        database = Database("sqlite+aiosqlite:///" + line.strip())
        try:
            await database.start()
            print("ok", flush=True)
        except StoreError as exc:
            print("failed", exc, flush=True)
        await database.close()

asyncio.run(main())
"""


def test_processes_starting_together_on_one_new_sqlite_file_all_open_it(
    tmp_path: Path,
) -> None:
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", _REPLICA],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    files = [tmp_path / f"round-{n}" / "llmgw.db" for n in range(6)]
    answers: list[list[str]] = []
    try:
        for replica in replicas:
            assert replica.stdout is not None and replica.stdout.readline() == "ready\n"
        for db in files:  # each round a new file, all replicas told together
            db.parent.mkdir()
            for replica in replicas:
                assert replica.stdin is not None
                replica.stdin.write(f"{db}\n")
                replica.stdin.flush()
            answers.append([r.stdout.readline().strip() for r in replicas if r.stdout])
    finally:
        for replica in replicas:
            replica.communicate(timeout=60)  # closes stdin: the replica ends
    assert answers == [["ok"] * len(replicas)] * len(files)
    for db in files:
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
            assert conn.execute("SELECT count(*) FROM requests").fetchone() == (0,)
