"""Bounds of the real process (``llmgw --config``): memory under compressed bodies,
and the open-connection cap."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes import free_port

MOCK = "logging: {format: text}\nproviders:\n  demo: {type: mock, models: [echo]}\n"


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Any]:
    processes: list[subprocess.Popen[bytes]] = []

    async def start(text: str) -> tuple[subprocess.Popen[bytes], int]:
        path = tmp_path / "gateway.yaml"
        path.write_text(text)
        port = free_port()
        command = [sys.executable, "-m", "llmgw", "--config", str(path)]
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/health") as response:
                        if response.status == 200:
                            return process, port
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise AssertionError("gateway did not start")

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=10)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_stalled_compressed_bodies_are_refused_and_cost_no_memory(launch: Any) -> None:
    """40 connections each send a gzip header and the first 19 KB of a body inflating
    to 20 MiB, then stall: each is answered 415 and the process grows by little."""
    process, port = await launch(MOCK)
    bomb = zlib.compress(b"0" * 20 * 1024**2, 9)
    declared = len(bomb)
    before = rss(process.pid)
    streams = []
    for index in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        framing = (
            f"Content-Length: {declared}\r\n" if index % 2 else "Transfer-Encoding: chunked\r\n"
        )
        prefix = bomb[:19_000]
        sent = prefix if index % 2 else f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n"
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Encoding: deflate\r\n"
            + framing.encode()
            + b"\r\n"
            + sent
        )
        await writer.drain()
        streams.append((reader, writer))
    for reader, _ in streams:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 415 ")
    grown = rss(process.pid) - before
    for _, writer in streams:
        writer.close()
    assert grown < 50 * 1024**2, grown


async def test_connections_past_max_connections_are_refused(launch: Any) -> None:
    _, port = await launch("server: {max_connections: 5}\n" + MOCK)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    for _, writer in held:  # each has sent a request head: they are counted, and open
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    for reader, _ in held:
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).startswith(
            b"HTTP/1.1 200"
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = await asyncio.wait_for(reader.read(), 30)  # answered, then closed
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b'"code":"overloaded"' in answer
    assert b"Retry-After: 1" in answer
    held[0][1].close()  # one leaves: a new one is served again
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a freed connection slot was not given back")
    for _, other in held[1:]:
        other.close()
