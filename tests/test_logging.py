"""One access log line per request (SPEC §7), as JSON or as text for people."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from llmgw.observe import logs
from tests.conftest import CLIENT_KEY, PROVIDER_KEY, one_provider
from tests.fakes import FakeOpenAI, wait_for

FIELDS = {
    "request_id",
    "key",
    "model",
    "provider",
    "upstream_model",
    "status",
    "cache",
    "attempts",
    "latency_ms",
    "ttfb_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "error",
}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_json_access_line_has_every_field(
    fake: FakeOpenAI, gateway: Any, capsys: Any, restore_logging: None
) -> None:
    logs.configure("info", "json")
    gw = await gateway(one_provider(fake.url))
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Request-ID": "log-me", "Authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert response.status == 200

    def access_lines() -> list[dict[str, Any]]:
        lines = [orjson.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
        found.extend(x for x in lines if x.get("logger") == "llmgw.access")
        return found

    found: list[dict[str, Any]] = []
    await wait_for(lambda: bool(access_lines()))
    [line] = [x for x in found if x["request_id"] == "log-me"]
    assert set(line) >= FIELDS
    assert line["status"] == 200 and line["provider"] == "up"
    assert line["model"] == "gpt-4o-mini" and line["upstream_model"] == "gpt-4o-mini"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (9, 3)
    assert line["attempts"] == 1 and line["latency_ms"] >= line["ttfb_ms"] >= 0
    assert line["level"] == "INFO" and "time" in line
    text = orjson.dumps(found).decode()
    assert CLIENT_KEY not in text and PROVIDER_KEY not in text


def flush_all() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_text_format_is_readable(capsys: Any, restore_logging: None) -> None:
    logs.configure("debug", "text")
    logging.getLogger("llmgw.access").info("request", extra={"status": 200, "model": "m"})
    flush_all()
    err = capsys.readouterr().err
    assert "INFO" in err and "llmgw.access: request" in err
    assert "status=200" in err and "model=m" in err


def test_lines_are_batched_but_never_held_long(capsys: Any, restore_logging: None) -> None:
    """Info lines wait for the next batch (at most FLUSH_INTERVAL); a warning goes out
    at once, with whatever was waiting before it, in order."""
    logs.configure("info", "text")
    log = logging.getLogger("llmgw.test")
    log.info("first")
    assert "first" not in capsys.readouterr().err
    log.warning("second")
    err = capsys.readouterr().err
    assert err.index("first") < err.index("second")
    log.info("third")
    time.sleep(logs.FLUSH_INTERVAL * 3)
    assert "third" in capsys.readouterr().err


def test_access_line_made_directly_is_the_line_logging_makes(monkeypatch: Any) -> None:
    """AccessLog skips the record when llmgw's JSON handler is the only way out; the
    line must be exactly what the formatter makes of the record."""
    stream = io.StringIO()
    handler = logs.BufferedStreamHandler(stream)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.MalformedRequests())
    logger = logging.getLogger("llmgw.test-access")
    logger.propagate, logger.handlers = False, [handler]
    logger.setLevel(logging.INFO)
    fields = {"request_id": "r1", "status": 200, "latency_ms": 1.25, "key": None, "cost": 1e-05}
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.375)  # the record's clock...
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_375_000_000)  # ... on 3.12+
    try:
        with monkeypatch.context() as direct_only:
            direct_only.setattr(logger, "makeRecord", None)  # fails if a record is made
            logs.AccessLog(logger).log(logging.INFO, fields)
        logger.addFilter(logging.Filter())  # a filter on the way: through logging
        logs.AccessLog(logger).log(logging.INFO, fields)
        logs.AccessLog(logger).log(logging.DEBUG, fields)  # below the level: nothing
        handler.flush()
    finally:
        handler.close()
        logger.filters.clear()
        logger.handlers.clear()
    direct, through = stream.getvalue().splitlines()
    assert direct == through
    assert orjson.loads(direct) == {
        "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_000)) + ",375",
        "level": "INFO",
        "logger": "llmgw.test-access",
        "message": "request",
        **fields,
    }


def test_access_line_with_an_unwritable_field_never_raises(capsys: Any) -> None:
    stream = io.StringIO()
    handler = logs.BufferedStreamHandler(stream)
    handler.setFormatter(logs.json_formatter())
    logger = logging.getLogger("llmgw.test-access-bad")
    logger.propagate, logger.handlers = False, [handler]
    logger.setLevel(logging.INFO)
    try:
        logs.AccessLog(logger).log(logging.INFO, {"status": 200, "huge": 2**70})
        handler.flush()
    finally:
        handler.close()
        logger.handlers.clear()
    assert "Traceback" in capsys.readouterr().err  # logging's own report of the bad record
