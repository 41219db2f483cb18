"""The limits' and budgets' scripts' own connection to Redis (``limits/resp.py``):
credentials and database from the URL, a restart or a killed connection, a Redis that
accepts and never answers, and URLs it leaves to redis-py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
import redis

from llmgw.limits.resp import Channel, lean_target, pack
from tests.conftest import CLIENT_KEY
from tests.fakes import FakeOpenAI
from tests.redis_server import redis_server
from tests.test_limits_redis import post, shared

RPM = "llmgw:{llmgw}:rpm:key:team-a"


def remaining(response: Any) -> str:
    return str(response.headers["x-ratelimit-remaining-requests"])


async def test_the_user_password_and_database_of_the_url_are_used(
    fake: FakeOpenAI, gateway: Any, redis_url: str, caplog: Any
) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        "gw-test", enabled=True, passwords=["+s3cret/pw"], keys="*", commands=["+@all"]
    )
    try:
        base = redis_url.rsplit("/", 1)[0].replace("redis://", "redis://gw-test:s3cret%2Fpw@")
        gw = await gateway(shared(fake.url, f"{base}/3", key="{rpm: 5}"))
        assert [remaining(await post(gw)) for _ in range(2)] == ["4", "3"]
        assert redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/3").zcard(RPM) == 2
        assert admin.zcard(RPM) == 0  # nothing in database 0
        assert "cannot be reached" not in caplog.text
    finally:
        admin.acl_deluser("gw-test")
        admin.close()


async def test_a_wrong_password_is_an_outage_and_the_policy_applies(
    fake: FakeOpenAI, gateway: Any, redis_url: str, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgw.limits.redis")
    wrong = redis_url.replace("redis://", "redis://nobody:hunter2@")
    gw = await gateway(shared(fake.url, wrong, key="{rpm: 1}", on_error="local"))
    assert [(await post(gw)).status for _ in range(2)] == [200, 429]  # held in memory
    outages = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(outages) == 1
    assert "hunter2" not in caplog.text


async def test_a_killed_connection_is_made_again_without_an_outage(
    fake: FakeOpenAI, gateway: Any, redis_url: str, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgw.limits.redis")
    gw = await gateway(shared(fake.url, redis_url, key="{rpm: 5}"))
    admin = redis.Redis.from_url(redis_url)
    try:
        assert remaining(await post(gw)) == "4"
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        assert remaining(await post(gw)) == "3"  # still counted in Redis
        assert admin.zcard(RPM) == 2
    finally:
        admin.close()
    assert "cannot be reached" not in caplog.text


async def test_a_restarted_redis_is_used_again(
    fake: FakeOpenAI, gateway: Any, tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgw.limits.redis")
    with redis_server(tmp_path) as url:
        gw = await gateway(shared(fake.url, url, key="{rpm: 5}", on_error="deny"))
        assert remaining(await post(gw)) == "4"
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert (await post(gw)).status == 429  # down: deny
    with redis_server(tmp_path, port):
        await asyncio.sleep(1.05)  # Redis is left alone for a second after a failure
        again = await post(gw)
        assert again.status == 200
        assert remaining(again) == "4"  # a new, empty Redis
    assert any("reachable again" in r.getMessage() for r in caplog.records)


async def _mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pass  # reads nothing, answers nothing


async def _babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # not RESP


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [(_mute, "TimeoutError"), (_babble, "unreadable reply")],
    ids=["never answers", "does not speak Redis"],
)
async def test_a_redis_that_fails_to_answer_is_an_outage_and_the_policy_applies(
    fake: FakeOpenAI, gateway: Any, caplog: Any, behaviour: Any, reason: str
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgw.limits.redis")
    accepted: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await behaviour(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = await gateway(
            shared(fake.url, f"redis://127.0.0.1:{port}/0", key="{rpm: 5}", on_error="allow")
        )
        response = await gw.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        )
        assert response.status == 200  # allowed, unchecked, once the reply failed
        assert "x-ratelimit-remaining-requests" not in response.headers
        outages = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
        assert len(outages) == 1 and reason in outages[0]
        assert accepted  # it did connect
    finally:
        await _close(server, accepted)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://127.0.0.1:6380/2", ("127.0.0.1", 6380, (), 2)),
        ("redis://localhost", ("localhost", 6379, (), 0)),
        ("redis://:p%40ss@h:1/0", ("h", 1, (b"p@ss",), 0)),
        ("redis://u:p@h:1/0", ("h", 1, (b"u", b"p"), 0)),
        ("rediss://h:1/0", None),  # TLS: redis-py's
        ("unix:///tmp/redis.sock", None),
        ("redis://h:1/0?socket_keepalive=true", None),
    ],
)
def test_which_urls_the_scripts_connection_serves(
    url: str, target: tuple[str, int, tuple[bytes, ...], int] | None
) -> None:
    assert lean_target(url) == target


async def test_a_call_whose_connection_is_lost_is_sent_once_more_on_a_new_one() -> None:
    """As redis-py's one retry for a stale pooled connection: the server ends the
    connection with a command unanswered; a new connection answers it."""
    commands: list[tuple[int, bytes]] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connection = len(writers)
        while command := await reader.read(1000):
            commands.append((connection, command))
            if connection == 1 and len(commands) == 2:
                break  # the second command: unanswered, the connection ends
            writer.write(b"*2\r\n:7\r\n$2\r\nok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = Channel(("127.0.0.1", port, (), 0), 1.0, 1.0)
    try:
        assert await channel.call("EVALSHA", "abc", 0) == [7, b"ok"]
        assert await channel.call("EVALSHA", "def", 0) == [7, b"ok"]
        assert [c for c, _ in commands] == [1, 1, 2]
        assert commands[1][1] == commands[2][1] == pack(("EVALSHA", "def", 0))
    finally:
        channel.close()
        await _close(server, writers)


async def _close(server: asyncio.Server, writers: list[asyncio.StreamWriter]) -> None:
    server.close()
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    await server.wait_closed()
