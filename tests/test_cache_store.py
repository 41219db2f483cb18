"""The cache's parts on their own: keys, client policy, the memory store, flights."""

from __future__ import annotations

import asyncio

import pytest

from llmgw.cache.coalesce import FOLLOWER_LAG, LAG_CHECK, Flight, Flights, Head
from llmgw.cache.entry import Entry, decode_entry, encode_entry
from llmgw.cache.keys import Policy, cache_key
from llmgw.cache.memory import MemoryStore
from llmgw.core import Call


def call(body: dict[str, object], endpoint: str = "chat") -> Call:
    return Call(endpoint, str(body.get("model", "m")), bool(body.get("stream")), body, b"")  # type: ignore[arg-type]


def entry(size: int, tag: str = "x") -> Entry:
    return Entry(200, "application/json", (tag.encode() * size,), False, 1000.0, "p", "m")


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "a"}], "seed": 1}


def test_key_ignores_order_and_user() -> None:
    shuffled = {
        "seed": 1,
        "messages": [{"name": "a", "content": "hi", "role": "user"}],
        "model": "m",
    }
    assert cache_key(call(BODY), None) == cache_key(call(shuffled), None)
    assert cache_key(call(BODY), None) == cache_key(call({**BODY, "user": "u1"}), None)


def test_key_separates_what_matters() -> None:
    base = cache_key(call(BODY), None)
    assert base != cache_key(call({**BODY, "stream": True}), None)
    streamed = cache_key(call({**BODY, "stream": True}), None)
    usage = {"include_usage": True}
    assert streamed != cache_key(call({**BODY, "stream": True, "stream_options": usage}), None)
    assert base != cache_key(call({**BODY, "seed": 2}), None)
    assert base != cache_key(call({**BODY, "model": "n"}), None)
    assert base != cache_key(call(BODY, endpoint="completions"), None)
    assert base != cache_key(call(BODY), "team-a")
    assert cache_key(call(BODY), "team-a") != cache_key(call(BODY), "team-b")


@pytest.mark.parametrize(
    ("header", "read", "write", "max_age"),
    [
        (None, True, True, None),
        ("no-cache", False, True, None),
        ("no-store", True, False, None),
        ("no-cache, no-store", False, False, None),
        ("max-age=60", True, True, 60),
        ("Max-Age=0", False, True, 0),
    ],
)
def test_policy(header: str | None, read: bool, write: bool, max_age: int | None) -> None:
    policy = Policy.from_header(header)
    assert (policy.read, policy.write, policy.max_age) == (read, write, max_age)


def test_max_age_judges_entry_age() -> None:
    stored = entry(1)
    assert Policy.from_header("max-age=10").accepts(stored, now=1009.0)
    assert not Policy.from_header("max-age=10").accepts(stored, now=1011.0)


async def test_lru_eviction_order_and_byte_bound() -> None:
    size = entry(100).size
    store = MemoryStore(max_bytes=3 * size)
    for name in ("a", "b", "c"):
        await store.put(name, entry(100, name), ttl=60)
    assert await store.get("a") is not None  # a becomes most recently used
    await store.put("d", entry(100, "d"), ttl=60)  # evicts b, the least recently used
    assert store.keys() == ["c", "a", "d"]
    assert await store.get("b") is None
    assert await store.sizes() == (3, 3 * size)
    await store.put("big", entry(1500, "e"), ttl=60)  # with the others, over: evicts all three
    assert store.keys() == ["big"]
    assert (await store.sizes())[1] <= store.max_bytes
    assert store.stats.evictions == 4


async def test_entry_larger_than_the_whole_cache_is_not_stored() -> None:
    store = MemoryStore(max_bytes=1000)
    await store.put("huge", entry(5000), ttl=60)
    assert await store.sizes() == (0, 0)


async def test_ttl_expires_entries() -> None:
    now = [100.0]
    store = MemoryStore(max_bytes=10_000, clock=lambda: now[0])
    await store.put("k", entry(10), ttl=5)
    now[0] = 104.9
    assert await store.get("k") is not None
    now[0] = 105.0
    assert await store.get("k") is None
    assert await store.sizes() == (0, 0)


async def test_shrinking_max_size_evicts() -> None:
    store = MemoryStore(max_bytes=10 * entry(10).size)
    for i in range(10):
        await store.put(str(i), entry(10), ttl=60)
    store.max_bytes = 4 * entry(10).size
    store.shrink()
    assert store.keys() == ["6", "7", "8", "9"]


def test_entry_encoding_round_trip_keeps_chunk_boundaries() -> None:
    original = Entry(
        200,
        "text/event-stream",
        (b"data: 1\n\n", b"", b"data: [DONE]\n\n"),
        True,
        1.5,
        "p",
        "m",
        3,
        4,
        "medium",
        0.875,
    )
    assert decode_entry(encode_entry(original)) == original
    assert decode_entry(b"garbage") is None
    assert decode_entry(encode_entry(original)[:-3]) is None


async def test_followers_get_every_chunk_at_their_own_pace() -> None:
    flights = Flights()
    flight, leads = flights.join("k")
    assert leads
    follower, leads_too = flights.join("k")
    assert follower is flight and not leads_too

    async def consume(delay: float) -> list[bytes]:
        reader = flight.follower()
        assert await reader.head() is not None
        got = []
        async for chunk in reader.chunks():
            got.append(chunk)
            await asyncio.sleep(delay)
        reader.leave()
        return got

    readers = [asyncio.ensure_future(consume(d)) for d in (0, 0.01, 0.05)]
    await asyncio.sleep(0)
    flight.commit(Head(200, "text/event-stream", True, "p", "m"))
    for i in range(5):
        flight.append(f"c{i}".encode())
        await asyncio.sleep(0.001)  # the leader never waits for its followers
    flight.finish(complete=True)
    results = await asyncio.gather(*readers)
    assert all(r == [b"c0", b"c1", b"c2", b"c3", b"c4"] for r in results)
    flights.land("k", flight)
    assert len(flights) == 0


async def test_abandoned_flight_releases_followers() -> None:
    flights = Flights()
    flight, _ = flights.join("k")
    waiter = asyncio.ensure_future(flight.follower().head())
    await asyncio.sleep(0)
    flight.finish(complete=True)  # gave up before committing
    assert await waiter is None
    assert not flight.complete
    replacement, leads = flights.join("k")
    assert leads and replacement is not flight


async def test_a_recording_too_big_to_store_is_dropped_unless_followed() -> None:
    flights = Flights()
    alone, _ = flights.join("alone", limit=10)
    alone.commit(Head(200, "text/event-stream", True, "p", "m"))
    for _ in range(5):
        alone.append(b"x" * 4)
    assert alone.dropped and alone.chunks == []  # memory let go at once
    alone.finish(complete=True)
    assert not alone.complete  # so it is never stored
    late, leads = flights.join("alone", limit=10)
    assert leads and late is not alone  # nobody may follow a recording with a hole

    followed, _ = flights.join("followed", limit=10)
    follower = followed.follower()
    followed.commit(Head(200, "text/event-stream", True, "p", "m"))
    assert await follower.head() is not None
    for _ in range(5):
        followed.append(b"x" * 4)
    assert followed.dropped  # never stored, too big
    assert len(followed.chunks) == 5  # but its follower still needs them
    follower.leave()
    assert followed.chunks == [] and followed.held == 0  # nobody does any more


@pytest.mark.parametrize("payload", [60, 300, 4000])
async def test_memory_store_counts_the_memory_its_entries_take(payload: int) -> None:
    """Filled past ``max_bytes`` with entries as the gateway stores them (a fresh key,
    content type and model string each), the store's traced memory stays within 1.2x
    of its bound, and is not far under it either (the accounting is not a guess)."""
    import hashlib
    import tracemalloc

    bound = 2 * 1024**2
    store = MemoryStore(max_bytes=bound)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(3 * bound // payload):
            key = "llmgw:cache:" + hashlib.sha256(str(i).encode()).hexdigest()
            body = f"{i:012d}".encode() * (payload // 12)
            await store.put(
                key,
                Entry(
                    200,
                    "application/json; " + str(i % 7),
                    (body,),
                    False,
                    1000.0 + i,
                    "up",
                    "gpt-4o-mini-" + str(i % 5),
                    prompt_tokens=1000 + i,
                    completion_tokens=2000 + i,
                ),
                3600,
            )
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.stats.evictions > 0
    assert (await store.sizes())[1] <= bound
    assert grown <= 1.2 * bound, (grown, bound)
    assert grown >= 0.7 * bound, (grown, bound)


async def test_a_follower_that_stops_reading_does_not_pin_the_recording() -> None:
    """Too big to store, the recording keeps only what a follower still has to read;
    one more than FOLLOWER_LAG behind is dropped and pins nothing more."""
    flight = Flight(limit=1024 * 1024)
    stalled, reading = flight.follower(), flight.follower()
    flight.commit(Head(200, "text/event-stream", True, "p", "m"))
    assert await stalled.head() is not None and await reading.head() is not None
    chunks = reading.chunks()
    piece = b"x" * (64 * 1024)
    peak = 0
    for _ in range(4 * FOLLOWER_LAG // len(piece)):
        flight.append(piece)
        assert await anext(chunks) is piece  # this one keeps up
        peak = max(peak, flight.held)
    assert stalled.lagged and not reading.lagged
    assert peak <= FOLLOWER_LAG + LAG_CHECK + len(piece)
    assert flight.held <= LAG_CHECK + len(piece)  # only the reader's few chunks are left
    assert [chunk async for chunk in stalled.chunks()] == []  # it ends at once
    flight.finish(complete=True)
    assert not flight.complete  # too big to store
