"""The usage ledger's cost per request: ``python -m tests.benchmarks.ledger``.

Measures, in one process and without HTTP, the two costs a request pays for its
ledger row: ``Ledger.add`` on the event loop (building and queueing the row, per
request) and the batched write (one INSERT per 500 rows, off the request path),
on SQLite (a temporary file) and, given ``--postgres URL``, on PostgreSQL. Each is
the process's CPU time (every thread: SQLite writes in aiosqlite's) per row;
``--no-tags`` leaves the requests' metadata tags out.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from llmgw.core import RequestContext
from llmgw.observe.metrics import Metrics
from llmgw.store.engine import Database, resolve_url
from llmgw.store.ledger import Ledger


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _context(i: int, tags: bool) -> RequestContext:
    ctx = RequestContext(f"req-{i:08x}", time.perf_counter(), endpoint="chat", key="team-a")
    ctx.model, ctx.provider, ctx.upstream_model = "fast", "openai", "gpt-4o-mini"
    ctx.status, ctx.cache, ctx.prompt_tokens, ctx.completion_tokens = 200, "MISS", 9, 3
    ctx.cost_usd, ctx.tags = 0.0000031, {"team": "search"} if tags else None
    return ctx


async def measure(url: str, rows: int, tags: bool) -> tuple[float, float]:
    db = Database(url)
    await db.start()
    ledger = Ledger(db, Metrics(), bound=rows + 1)
    contexts = [_context(i, tags) for i in range(rows)]
    start = _cpu()
    for ctx in contexts:
        ledger.add(ctx, 0.01)
    queued = _cpu() - start
    start = _cpu()
    assert await ledger.flush()
    written = _cpu() - start
    await db.close()
    return queued / rows * 1e6, written / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--postgres", help="postgresql://... to measure as well")
    parser.add_argument("--no-tags", action="store_true", help="requests without tags")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        targets = {"sqlite": resolve_url("sqlite:///ledger.db", folder)}
        if args.postgres:
            targets["postgresql"] = resolve_url(args.postgres, str(Path.cwd()))
        for name, url in targets.items():
            queued, written = asyncio.run(measure(url, args.rows, not args.no_tags))
            print(
                f"{name:10s} {args.rows} rows: add {queued:.2f} us CPU/request on the loop, "
                f"batched write {written:.2f} us CPU/request off the request path"
            )


if __name__ == "__main__":
    main()
