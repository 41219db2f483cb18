"""Signals on a real process: SIGHUP reloads, SIGTERM drains streams, a second exits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes import free_port

MESSAGES = [{"role": "user", "content": "one two three four five six seven eight"}]


def config(chunk_delay: str, alias: str = "") -> str:
    text = f"""
server: {{shutdown_timeout: 10s}}
logging: {{format: text}}
providers:
  demo: {{type: mock, models: [echo], chunk_delay: {chunk_delay}}}
"""
    return text + (f"models:\n  {alias}: demo/echo\n" if alias else "")


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Any]:
    processes: list[subprocess.Popen[bytes]] = []

    async def start(text: str) -> tuple[subprocess.Popen[bytes], str, Path]:
        path = tmp_path / "gateway.yaml"
        path.write_text(text)
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmgw",
                "--config",
                str(path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{base}/health") as response:
                        if response.status == 200:
                            return process, base, path
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise AssertionError("gateway did not start")

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


async def wait_exit(process: subprocess.Popen[bytes], within: float) -> int:
    return await asyncio.wait_for(asyncio.to_thread(process.wait), within)


async def test_sigterm_lets_a_slow_stream_finish_then_exits_0(launch: Any) -> None:
    process, base, _ = await launch(config("150ms"))
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{base}/v1/chat/completions",
            json={"model": "echo", "messages": MESSAGES, "stream": True},
        )
        first = await response.content.readuntil(b"\n\n")
        os.kill(process.pid, signal.SIGTERM)
        rest = await response.content.read()
    body = first + rest
    assert body.endswith(b"data: [DONE]\n\n")
    assert b'"content":"eight"' in body
    assert await wait_exit(process, 15) == 0
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"{base}/health")


async def test_second_signal_exits_at_once(launch: Any) -> None:
    process, base, _ = await launch(config("2s"))
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{base}/v1/chat/completions",
            json={"model": "echo", "messages": MESSAGES, "stream": True},
        )
        await response.content.readuntil(b"\n\n")
        os.kill(process.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert process.poll() is None  # still draining the 16 s stream
        os.kill(process.pid, signal.SIGTERM)
        code = await wait_exit(process, 5)
    assert code == 128 + signal.SIGTERM


async def test_sighup_reloads(launch: Any) -> None:
    process, base, path = await launch(config("0s"))
    body = {"model": "hup", "messages": MESSAGES}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/v1/chat/completions", json=body) as response:
            assert response.status == 404
        # SIGHUP right after the write reloads before the file watcher's debounce
        # (100 ms) is over; the watcher then finds the text unchanged.
        path.write_text(config("0s", alias="hup"))
        os.kill(process.pid, signal.SIGHUP)
        for _ in range(100):
            async with session.post(f"{base}/v1/chat/completions", json=body) as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert response.status == 200
        async with session.get(f"{base}/api/v1/config") as response:
            reload = (await response.json())["last_reload"]
        assert reload["result"] == "success"
        assert reload["trigger"] == "sighup"
