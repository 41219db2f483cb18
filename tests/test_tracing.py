"""Tracing (SPEC §15), checked against an OTLP/HTTP receiver started here: the spans are
decoded from the protobuf export and read like a collector would."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import PROVIDER_KEY
from tests.fakes import FakeOpenAI, free_port, hang, reply_error, wait_for

trace_service = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="opentelemetry-proto is needed to decode the export (pip install -e '.[test]')",
)

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"


class Receiver:
    """An OTLP/HTTP trace receiver: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.export)
        return app

    async def export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = trace_service.ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            self.resources.append(attributes(resource_spans.resource.attributes))
            for scope in resource_spans.scope_spans:
                self.spans.extend(scope.spans)
        body = trace_service.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")


def attributes(items: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        value = item.value
        found[item.key] = getattr(value, value.WhichOneof("value"))
    return found


def config(fake_url: str, collector: str, **telemetry: Any) -> str:
    extra = "".join(f"\n  {k}: {v}" for k, v in telemetry.items())
    return f"""
providers:
  broken: {{type: openai, base_url: {fake_url}, api_key: {PROVIDER_KEY}, max_retries: 0}}
  good: {{type: openai, base_url: {fake_url}, api_key: {PROVIDER_KEY}}}
models:
  chain: [broken/gpt-4o-mini, good/gpt-4o]
telemetry:
  otlp_endpoint: {collector}
  service_name: gw-under-test{extra}
"""


async def test_a_fallback_is_one_trace_with_sibling_attempts(
    fake: FakeOpenAI, gateway: Any, aiohttp_server: Any, caplog: Any
) -> None:
    receiver = Receiver()
    collector = await aiohttp_server(receiver.app())
    gw = await gateway(config(fake.url, str(collector.make_url(""))))
    fake.then(reply_error(500))
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"
    with caplog.at_level(logging.INFO, logger="llmgw.access"):
        response = await gw.post(
            "/v1/chat/completions",
            json={"model": "chain", "messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": traceparent},
        )
        assert response.status == 200
        assert response.headers["X-LLMGW-Attempts"] == "2"
        await wait_for(lambda: len(receiver.spans) >= 3, within=20)
    by_kind: dict[int, list[Any]] = {}
    for span in receiver.spans:
        by_kind.setdefault(span.kind, []).append(span)
    [server] = by_kind[2]  # SPAN_KIND_SERVER
    attempts = sorted(by_kind[3], key=lambda s: s.start_time_unix_nano)  # SPAN_KIND_CLIENT
    assert len(attempts) == 2
    # the client's trace continues; both attempts are children of the server span
    assert server.trace_id.hex() == CLIENT_TRACE
    assert server.parent_span_id.hex() == CLIENT_PARENT
    assert all(a.trace_id == server.trace_id for a in attempts)
    assert all(a.parent_span_id == server.span_id for a in attempts)
    failed, answered = (attributes(a.attributes) for a in attempts)
    assert failed["llmgw.provider"] == "broken" and failed["error.type"] == "status_500"
    assert attempts[0].status.code == 2  # STATUS_CODE_ERROR
    assert answered["gen_ai.system"] == "openai"
    assert answered["gen_ai.request.model"] == "gpt-4o"
    assert answered["gen_ai.response.model"] == "gpt-4o"
    assert answered["gen_ai.usage.input_tokens"] == 9
    assert answered["gen_ai.usage.output_tokens"] == 3
    assert answered["http.response.status_code"] == 200
    # each provider saw the traceparent of its own attempt span
    for seen, span in zip(fake.seen, attempts, strict=True):
        assert seen.headers["traceparent"] == f"00-{CLIENT_TRACE}-{span.span_id.hex()}-01"
    server_attributes = attributes(server.attributes)
    assert server_attributes["http.response.status_code"] == 200
    assert server_attributes["gen_ai.request.model"] == "chain"
    assert server_attributes["llmgw.attempts"] == 2
    events = {event.name: attributes(event.attributes) for event in server.events}
    assert events["llmgw.routing"]["targets"] == "broken/gpt-4o-mini, good/gpt-4o"
    assert events["llmgw.limits"]["decision"] == "admitted"
    assert receiver.resources[0]["service.name"] == "gw-under-test"
    # the access line names the trace
    [line] = [r for r in caplog.records if getattr(r, "request_id", None)]
    assert line.trace_id == CLIENT_TRACE


async def test_a_stream_and_a_new_trace_without_traceparent(
    fake: FakeOpenAI, gateway: Any, aiohttp_server: Any, sdk: Any
) -> None:
    receiver = Receiver()
    collector = await aiohttp_server(receiver.app())
    gw = await gateway(config(fake.url, str(collector.make_url("/v1/traces"))))
    stream = await sdk(gw).chat.completions.create(
        model="good/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo from gpt-4o"
    await wait_for(lambda: len(receiver.spans) >= 2, within=20)
    server = next(s for s in receiver.spans if s.kind == 2)
    attempt = next(s for s in receiver.spans if s.kind == 3)
    assert server.parent_span_id == b""  # a root: the client sent no traceparent
    assert attempt.parent_span_id == server.span_id
    assert fake.seen[0].headers["traceparent"].split("-")[1] == server.trace_id.hex()


async def test_hedged_racers_are_sibling_attempts_and_the_loser_is_cancelled(
    make_fake: Any, gateway: Any, aiohttp_server: Any
) -> None:
    slow, quick = await make_fake(), await make_fake()
    slow.then(hang(10))  # no first byte: the hedge starts, wins, and cancels this one
    receiver = Receiver()
    collector = await aiohttp_server(receiver.app())
    gw = await gateway(f"""
providers:
  slow: {{type: openai, base_url: {slow.url}, api_key: {PROVIDER_KEY}, max_retries: 0}}
  quick: {{type: openai, base_url: {quick.url}, api_key: {PROVIDER_KEY}}}
models:
  raced: [slow/gpt-4o-mini, quick/gpt-4o]
routing:
  hedge: {{after: 100ms, max_extra: 1}}
telemetry:
  otlp_endpoint: {collector.make_url("")}
""")
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "raced", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status == 200 and response.headers["X-LLMGW-Provider"] == "quick"
    await wait_for(lambda: len(receiver.spans) >= 3, within=20)
    [server] = [s for s in receiver.spans if s.kind == 2]
    attempts = sorted(
        (s for s in receiver.spans if s.kind == 3), key=lambda s: s.start_time_unix_nano
    )
    assert len(attempts) == 2
    assert all(a.parent_span_id == server.span_id for a in attempts)  # siblings
    assert attempts[0].span_id != attempts[1].span_id
    loser, winner = (attributes(a.attributes) for a in attempts)
    assert loser["llmgw.provider"] == "slow" and winner["llmgw.provider"] == "quick"
    assert loser["llmgw.attempt"] == 1 and winner["llmgw.attempt"] == 2
    assert loser["error.type"] == "cancelled" and loser["llmgw.hedge.lost"] is True
    assert "http.response.status_code" not in loser and "llmgw.hedge.lost" not in winner
    assert attempts[0].status.code != 2  # losing a race is not an error of the request
    assert winner["http.response.status_code"] == 200
    assert winner["gen_ai.response.model"] == "gpt-4o" and "error.type" not in winner
    assert attempts[1].status.code != 2
    assert attributes(server.attributes)["llmgw.attempts"] == 2
    # each racer sent the provider the traceparent of its own span
    assert slow.seen[0].headers["traceparent"].split("-")[2] == attempts[0].span_id.hex()
    assert quick.seen[0].headers["traceparent"].split("-")[2] == attempts[1].span_id.hex()


async def test_an_unreachable_collector_never_fails_a_request_and_drops_are_counted(
    fake: FakeOpenAI, gateway: Any
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await gateway(config(fake.url, dead, max_queue_size=2, export_timeout="1s"))
    body = {"model": "good/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(10):
        assert (await gw.post("/v1/chat/completions", json=body)).status == 200

    dropped = 0.0

    async def count() -> float:
        text = await (await gw.get("/metrics")).text()
        line = next(x for x in text.splitlines() if x.startswith("llmgw_trace_spans_dropped_total"))
        return float(line.split()[-1])

    for _ in range(100):  # bounded: the exporter gives up within its timeout
        dropped = await count()
        if dropped >= 10:
            break
        await asyncio.sleep(0.1)
    assert dropped >= 10  # 20 spans made: a full queue dropped some, the failed exports the rest


def test_tracing_off_never_imports_the_sdk(tmp_path: Any) -> None:
    """Off by default, and then free: the SDK stays out of the process."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from aiohttp.test_utils import TestClient, TestServer
        from llmgw.app import create_app
        from llmgw.config import parse

        async def main():
            # redis-py imports parts of OpenTelemetry itself when installed: what counts
            # is that serving requests loads none, and no tracer or exporter ever
            before = {m for m in sys.modules if m.startswith("opentelemetry")}
            app = create_app(parse("providers: {demo: {type: mock}}\\n", environ={}))
            async with TestClient(TestServer(app)) as client:
                for stream in (False, True):
                    r = await client.post("/v1/chat/completions", json={
                        "model": "demo/x", "stream": stream,
                        "messages": [{"role": "user", "content": "hi"}]})
                    assert r.status == 200
                    await r.read()
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
            assert not set(loaded) - before, set(loaded) - before
            assert "opentelemetry.sdk.trace" not in loaded, loaded
            assert not [m for m in loaded if m.startswith("opentelemetry.exporter")], loaded

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_telemetry_settings_are_validated() -> None:
    from llmgw.config import ConfigError, parse

    base = "providers: {demo: {type: mock}}\ntelemetry:\n  otlp_endpoint: %s\n"
    with pytest.raises(ConfigError, match=r"telemetry\.otlp_endpoint"):
        parse(base % "collector:4318", environ={})
    with pytest.raises(ConfigError, match="sample_ratio"):
        parse(base % "http://c:4318" + "  sample_ratio: 2\n", environ={})
