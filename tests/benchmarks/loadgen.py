"""The Python load generator: closed loops, a fixed open-loop rate, and streams held
open. Every loop is bounded both in count and in time. Used where wrk cannot say
what is needed (time to first byte, per-stream timing) and in place of wrk when it
is not installed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .client import Connection, Result

MakeRequest = Callable[[int], bytes]  # request number -> raw HTTP request


async def _open_many(host: str, port: int, count: int) -> list[Connection]:
    connections: list[Connection] = []
    for start in range(0, count, 100):  # in batches, to stay under the listen backlog
        batch = [Connection.open(host, port) for _ in range(start, min(count, start + 100))]
        connections += await asyncio.gather(*batch)
    return connections


def _close_all(connections: list[Connection]) -> None:
    for connection in connections:
        connection.close()


async def closed_loop(
    host: str, port: int, make: MakeRequest, conns: int, duration: float, max_requests: int
) -> tuple[list[Result], float]:
    """``conns`` connections, each sending its next request as soon as the last is
    answered, until ``duration`` seconds or ``max_requests``. Returns the results
    and the elapsed time."""
    connections = await _open_many(host, port, conns)
    results: list[Result] = []
    counter = iter(range(max_requests))
    began = time.perf_counter()
    deadline = began + duration

    async def worker(connection: Connection) -> None:
        for number in counter:
            if time.perf_counter() >= deadline:
                return
            result = await connection.request(make(number))
            results.append(result)
            if connection.closed:
                return

    try:
        async with asyncio.timeout(duration + 30):
            await asyncio.gather(*(worker(c) for c in connections))
    except TimeoutError:  # a server that cannot keep up: each request in flight failed
        results += [Result(error="timed out")] * sum(not c.closed for c in connections)
    finally:
        _close_all(connections)
    return results, time.perf_counter() - began


async def fixed_rate(
    host: str, port: int, make: MakeRequest, rate: float, count: int, max_conns: int = 64
) -> list[Result]:
    """``count`` requests sent at ``rate`` per second whether or not earlier ones were
    answered (open loop), each on an idle connection (a new one if none is idle).
    Latency is measured from the moment the request is written: the event loop's
    timers are only good to a millisecond, which is the size of what is measured."""
    idle: list[Connection] = await _open_many(host, port, 4)
    every: list[Connection] = list(idle)
    results: list[Result] = []

    async def one(number: int) -> None:
        connection = idle.pop() if idle else None
        if connection is None:
            if len(every) >= max_conns:
                results.append(Result(error="no free connection"))
                return
            connection = await Connection.open(host, port)
            every.append(connection)
        result = await connection.request(make(number))
        results.append(result)
        if not connection.closed:
            idle.append(connection)

    tasks: list[asyncio.Task[None]] = []
    began = time.perf_counter() + 0.01
    try:
        async with asyncio.timeout(count / rate + 30):
            for number in range(count):
                scheduled = began + number / rate
                pause = scheduled - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                tasks.append(asyncio.create_task(one(number)))
            await asyncio.gather(*tasks)
    except TimeoutError:  # a server that cannot keep up: the unanswered are failures
        results += [Result(error="timed out")] * (count - len(results))
    finally:
        for task in tasks:
            task.cancel()
        _close_all(every)
    return results


async def streams_in_waves(
    host: str, port: int, make: MakeRequest, concurrency: int, waves: int, timeout: float
) -> list[Result]:
    """``concurrency`` connections, each running ``waves`` streams one after another."""
    results, _ = await closed_loop(
        host, port, make, concurrency, duration=timeout, max_requests=concurrency * waves
    )
    return results


async def held_open(
    host: str, port: int, make: MakeRequest, count: int, timeout: float
) -> list[Result]:
    """Open ``count`` connections first (untimed), then send every request at once
    and hold all the streams open until they end."""
    connections = await _open_many(host, port, count)

    async def one(number: int, connection: Connection) -> Result:
        sent = time.perf_counter()
        try:
            return await asyncio.wait_for(connection.request(make(number), sent), timeout)
        except TimeoutError:
            return Result(sent=sent, done=time.perf_counter(), error="timed out")

    try:
        return await asyncio.gather(*(one(n, c) for n, c in enumerate(connections)))
    finally:
        _close_all(connections)
