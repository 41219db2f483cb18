"""CPU per request with tracing on and off, in one process (SPEC §15, §16).

    python -m tests.benchmarks.tracing [requests]

Serves the same non-streamed chat (mock provider, no network) from two gateways in
this process: one without ``telemetry``, one exporting every span (sample_ratio 1)
to an OTLP/HTTP receiver in the same process. Runs are interleaved A/B, and CPU time
(``time.process_time``: the exporter thread included) is divided by the requests.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from llmgw.app import create_app
from llmgw.config import parse
from llmgw.server.lifecycle import handler_options

BASE = "providers:\n  demo: {type: mock, models: [echo]}\n"
BODY = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}


async def receiver() -> TestServer:
    async def export(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    server = TestServer(app)
    await server.start_server()
    return server


async def gateway(text: str) -> TestClient[web.Request, web.Application]:
    server = TestServer(create_app(parse(text, environ={})))
    await server.start_server(**handler_options())
    client = TestClient(server)
    await client.start_server()
    return client


async def cpu_per_request(client: TestClient[web.Request, web.Application], n: int) -> float:
    began = time.process_time()
    for _ in range(n):
        async with client.post("/v1/chat/completions", json=BODY) as response:
            await response.read()
    return (time.process_time() - began) / n


async def main(n: int) -> None:
    collector = await receiver()
    off = await gateway(BASE)
    on = await gateway(BASE + f"telemetry: {{otlp_endpoint: {collector.make_url('')}}}\n")
    for client in (off, on):  # warm up
        await cpu_per_request(client, 200)
    results: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(5):
        results["off"].append(await cpu_per_request(off, n))
        results["on"].append(await cpu_per_request(on, n))
    off_us = statistics.median(results["off"]) * 1e6
    on_us = statistics.median(results["on"]) * 1e6
    print(f"CPU per request (client + gateway + receiver, one process), median of 5 x {n}:")
    print(f"  tracing off: {off_us:7.0f} us")
    print(f"  tracing on:  {on_us:7.0f} us  ({on_us / off_us:.2f}x, +{on_us - off_us:.0f} us)")
    for client in (off, on):
        await client.close()
    await collector.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
