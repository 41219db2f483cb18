"""Real processes for the redis backend tests: a throwaway ``redis-server`` and
gateway processes, each on a free 127.0.0.1 port and stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import free_port

ROOT = Path(__file__).resolve().parent.parent


def _wait_for_port(port: int, process: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {within}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM to this PID only
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def redis_server(directory: Path, port: int | None = None) -> Iterator[str]:
    """A redis-server with no persistence; yields its URL. Skips the test when
    ``redis-server`` is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server); CI installs it")
    port = port or free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port, process, 10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


@contextlib.contextmanager
def gateway_process(config: Path, log: Path) -> Iterator[str]:
    """``python -m llmgw --config ...`` on a free port; yields its base URL."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmgw", "--config", str(config), "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_port(port, process, 20)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)
