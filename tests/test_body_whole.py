"""A body that arrives whole with its head (server/body.py) must still be refused
while the bodies still arriving hold ``max_pending_body_bytes``, and leave nothing
held, heavy or light."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from llmgw.server.appkeys import BODIES
from tests.fakes import wait_for
from tests.test_input_bounds import _two_stalled

MOCK = "providers:\n  demo: {type: mock, models: [echo]}\n"


async def _send_whole(port: int, body: bytes, headers: str = "") -> tuple[int, bytes]:
    """One request, head and body in a single write; its status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


async def test_a_whole_body_is_refused_while_arriving_bodies_hold_the_pending_bytes(
    gateway: Any,
) -> None:
    gw, bodies, first, second = await _two_stalled(gateway)
    port = gw.server.port
    request = orjson.dumps(
        {"model": "echo", "messages": [{"role": "user", "content": "x" * 20_000}]}
    )
    status, body = await _send_whole(port, request)
    assert status == 503
    assert orjson.loads(body)["error"]["code"] == "overloaded"
    assert bodies.held >= 500 * 1024  # the refused body took nothing
    first.close()
    await wait_for(lambda: bodies.held <= 256 * 1024)
    status, _ = await _send_whole(port, request)
    assert status == 200
    second.close()
    await wait_for(lambda: bodies.held == 0)


async def test_whole_bodies_leave_nothing_held_and_keep_their_refusals(gateway: Any) -> None:
    gw = await gateway("server: {max_body_size: 1KiB}\n" + MOCK)
    bodies = gw.app[BODIES]
    port = gw.server.port
    small = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    assert (await _send_whole(port, small))[0] == 200
    status, body = await _send_whole(port, small, "Content-Encoding: gzip\r\n")
    assert status == 415
    assert b"Content-Encoding 'gzip'" in body
    assert (await _send_whole(port, small, "Content-Encoding: Identity \r\n"))[0] == 200
    large = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "x" * 2000}]})
    assert (await _send_whole(port, large))[0] == 413
    assert bodies.held == 0 and bodies.heavy_in_use == 0
