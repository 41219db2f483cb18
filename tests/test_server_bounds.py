"""Bounds of the real process (``llmgw --config``): memory under compressed bodies and
under a 25 MiB audio upload (sent with the openai SDK, spooled to disk and streamed to
an OpenAI-type upstream), and the open-connection cap."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import BodyPartReader, web

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


SIZE = 25 * 1024**2


def peak(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_25_mib_upload_passes_with_flat_memory(
    launch: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    received: list[tuple[str, int, str]] = []  # model, file size, file sha256

    async def transcribe(request: web.Request) -> web.Response:
        reader = await request.multipart()
        model, size, digest = "", 0, hashlib.sha256()
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            if part.filename is None:
                model = await part.text() if part.name == "model" else model
                continue
            while chunk := await part.read_chunk(256 * 1024):  # counted, never held
                size += len(chunk)
                digest.update(chunk)
        received.append((model, size, digest.hexdigest()))
        return web.json_response({"text": f"heard {size} bytes"})

    upstream = web.Application(client_max_size=1024)
    upstream.router.add_post("/v1/audio/transcriptions", transcribe)
    server = await aiohttp_server(upstream, host="127.0.0.1")
    process, port = await launch(
        "logging: {format: text}\nproviders:\n"
        f"  up: {{type: openai, base_url: 'http://127.0.0.1:{server.port}/v1', api_key: sk-up,"
        " models: [whisper-1]}\n"
    )
    audio = tmp_path / "talk.wav"
    block = hashlib.sha256(b"llmgw").digest() * 2048  # 64 KiB, not compressible to nothing
    with audio.open("wb") as out:
        for _ in range(SIZE // len(block)):
            out.write(block)
    expected = hashlib.sha256(audio.read_bytes()).hexdigest()
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0
    )
    async with client:
        small = await client.audio.transcriptions.create(file=("a.wav", b"warm"), model="whisper-1")
        assert small.text == "heard 4 bytes"
        before = peak(process.pid)
        result = await client.audio.transcriptions.create(file=audio, model="whisper-1")
        grown = peak(process.pid) - before
    assert result.text == f"heard {SIZE} bytes"
    assert received[-1] == ("whisper-1", SIZE, expected)
    assert grown < SIZE // 5, f"peak memory grew by {grown} bytes for a {SIZE}-byte upload"


async def test_declared_upload_over_the_limit_refused_before_reading(launch: Any) -> None:
    """A Content-Length past the limit (and the fields' room) is answered 413 with not a
    byte of the body sent."""

    _, port = await launch(
        "logging: {format: text}\nserver: {max_upload_size: 1MiB}\n"
        "providers:\n  demo: {type: mock, models: [echo]}\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        + f"Content-Length: {SIZE}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head
