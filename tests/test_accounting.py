"""Access lines and request metrics are written together at the end of the event
loop's turn (``llmgw.observe.accounting``): none is lost, none waits longer, order is kept."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from llmgw.core import RequestContext
from llmgw.observe.accounting import Accounting
from llmgw.observe.metrics import Metrics


def ended(request_id: str, cache: object = "MISS") -> RequestContext:
    ctx = RequestContext(request_id=request_id, started=time.perf_counter())
    ctx.endpoint, ctx.model_label, ctx.status = "chat", "m", 200
    ctx.cache = cache  # type: ignore[assignment]
    return ctx


async def test_a_turns_requests_are_written_together_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    accounting = Accounting(metrics)
    for ctx in (ended("r0"), ended("r1"), ended("broken", cache=7), ended("r2")):
        accounting.add(ctx, client_api=True)
    assert not [r for r in caplog.records if r.name == "llmgw.access"]  # not yet
    await asyncio.sleep(0)  # the end of this turn of the loop
    lines = [getattr(r, "request_id", None) for r in caplog.records if r.name == "llmgw.access"]
    assert lines == ["r0", "r1", "broken", "r2"]
    assert any("could not account for request broken" in r.message for r in caplog.records)
    labels = {"endpoint": "chat", "model": "m", "provider": "none", "status": "200"}
    served = metrics.registry.get_sample_value("llmgw_requests_total", labels | {"cache": "miss"})
    assert served == 3  # the broken one cost nobody else their count


async def test_drain_writes_what_is_pending_now_and_once() -> None:
    metrics = Metrics()
    accounting = Accounting(metrics)
    accounting.add(ended("r0"), client_api=True)
    accounting.drain()  # what /metrics does before it renders
    assert (
        metrics.registry.get_sample_value(
            "llmgw_request_duration_seconds_count", {"endpoint": "chat"}
        )
        == 1
    )
    await asyncio.sleep(0)  # the turn's own drain finds nothing left: no double count
    assert (
        metrics.registry.get_sample_value(
            "llmgw_request_duration_seconds_count", {"endpoint": "chat"}
        )
        == 1
    )
