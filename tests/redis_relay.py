"""A TCP relay on 127.0.0.1 in front of a real ``redis-server`` that meddles with one
script call: once ``armed`` with a script's SHA1, the next command carrying it is
``caught`` and either passed on with its reply held until ``release`` is set
(``mode = "hold"``: the script runs, its reply is late; ``holding`` is set while held)
or never passed on (``mode = "drop"``: it never runs)."""

from __future__ import annotations

import asyncio
import contextlib


class ScriptRelay:
    def __init__(self, port: int) -> None:
        self.port = port
        self.armed: bytes | None = None
        self.mode = "hold"
        self.caught = asyncio.Event()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += (client_w, redis_w)
        hold = [False]  # this connection's next reply is held

        async def to_redis() -> None:
            tail = b""
            while data := await client_r.read(65536):
                seen, tail = tail + data, data[-64:]  # a SHA1 split over two reads too
                if self.armed is not None and self.armed in seen:
                    self.armed = None
                    self.caught.set()
                    if self.mode == "drop":
                        continue
                    hold[0] = True
                redis_w.write(data)
                await redis_w.drain()
            redis_w.close()

        async def to_client() -> None:
            while data := await redis_r.read(65536):
                if hold[0]:
                    hold[0] = False
                    self.holding.set()
                    await self.release.wait()
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        for work in (to_redis(), to_client()):
            task = asyncio.ensure_future(work)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
