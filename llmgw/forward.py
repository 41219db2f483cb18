"""The fallback chain: try each target in order, retrying each as configured.

A plain loop over the targets routing returned. Whether a failure moves on is a
pure function of the failure (``routing.falls_back``). It can move on only before
the first byte reached the client: once ``relay.stream`` has committed, what
happens next is the stream's business. When no target answered, the error the client
gets is ``verdict``'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from aiohttp import web

from llmgw import hedge, relay, verdict
from llmgw.answer import Answer
from llmgw.config.redact import provider_secrets
from llmgw.core import Call, RequestContext, Unsupported
from llmgw.errors import provider_rejection
from llmgw.inline_images import inline_images
from llmgw.observe.metrics import CIRCUIT_STATES, Metrics
from llmgw.observe.tracing import answer_model, start_attempt
from llmgw.routing.router import Target, backoff, falls_back, retries
from llmgw.runtime import Provider, Runtime
from llmgw.upstream import (
    TRANSPORT_ERRORS,
    AttemptFailure,
    UpstreamResponse,
    failure_from,
    parse_answer,
    retry_after,
)

log = logging.getLogger(__name__)


async def forward(
    ctx: RequestContext,
    runtime: Runtime,
    call: Call,
    targets: Sequence[Target],
    metrics: Metrics,
    answer: Answer,
) -> web.StreamResponse:
    """Answer ``call`` from its targets, written to ``answer`` by the one that commits."""
    breaker = runtime.config.routing.circuit_breaker
    failures: list[tuple[str, AttemptFailure]] = []
    skipped: list[str] = []
    circuit_open = False  # a skipped target may serve again soon
    tried_one = False
    hedging = runtime.config.routing.hedge is not None and len(targets) > 1
    for index, target in enumerate(targets):
        provider = runtime.providers[target.provider]
        if provider.disabled is not None:
            skipped.append(f"{provider.name}: disabled ({provider.disabled})")
            continue
        for attempt in range(provider.config.max_retries + 1):
            state = provider.state
            if not state.breaker.allow(breaker.failures, breaker.cooldown):
                skipped.append(f"{provider.name}: circuit open")
                circuit_open = True
                _show_circuit(metrics, provider)
                break
            if attempt == 0 and tried_one:
                metrics.fallbacks.labels(ctx.model_label).inc()
            if attempt:
                await asyncio.sleep(backoff(attempt, failures[-1][1].retry_after))
            tried_one = True
            ctx.attempts += 1
            try:
                if hedging:  # the chain's first attempt only
                    hedging = False
                    provider, response = await _hedged(
                        ctx, runtime, call, targets[index:], metrics, answer
                    )
                else:
                    response = await _attempt(ctx, runtime, provider, target, call, answer)
            except AttemptFailure as failure:
                _record_failure(metrics, provider, failure, breaker.failures)
                failures.append((provider.name, failure))
                if not falls_back(failure, runtime.fallback_on):
                    if failure.kind == "status" and (failure.status or 0) < 500:
                        return _client_error(ctx, provider, call, failure)
                    error = verdict.final_error(call, failures, skipped)
                    raise verdict.advise(error, failures, circuit_open) from None
                if not retries(failure):
                    break
                continue
            except BaseException:
                if ctx.delivered:  # the client left, but after its whole answer
                    _record_success(metrics, provider)
                else:
                    state.breaker.abandon()
                raise
            broken = _broken_stream(ctx)
            if broken is None:
                _record_success(metrics, provider)
            else:  # too late to fall back, not too late to count against the provider
                _record_failure(metrics, provider, broken, breaker.failures)
            return response
    raise verdict.advise(verdict.final_error(call, failures, skipped), failures, circuit_open)


async def _hedged(
    ctx: RequestContext,
    runtime: Runtime,
    call: Call,
    targets: Sequence[Target],
    metrics: Metrics,
    answer: Answer,
) -> tuple[Provider, web.StreamResponse]:
    """The first attempt, raced against the next targets (``routing.hedge``): the
    winner's provider and answer, or the first target's failure when every racer failed
    (the others' failures are counted here)."""
    settings = runtime.config.routing.hedge
    assert settings is not None
    breaker = runtime.config.routing.circuit_breaker
    raced = [(runtime.providers[targets[0].provider], targets[0])]
    for target in targets[1:]:
        provider = runtime.providers[target.provider]
        if len(raced) > settings.max_extra:
            break
        if provider.disabled is None and not provider.state.breaker.is_open(breaker.cooldown):
            raced.append((provider, target))

    def racer(provider: Provider, target: Target) -> hedge.Racer[web.StreamResponse]:
        return lambda copy: _attempt(copy, runtime, provider, target, call, answer)

    try:
        won, response = await hedge.race(ctx, [racer(*r) for r in raced], settings.after)
    except hedge.Lost as lost:
        lost.failures.sort(key=lambda failure: failure[0])  # the first target's first
        for index, error in lost.failures[1:]:
            if isinstance(error, AttemptFailure):
                _record_failure(metrics, raced[index][0], error, breaker.failures)
        if len(raced) > 1 and len(lost.failures) > 1:
            metrics.hedges.labels("failed").inc()
        raise lost.failures[0][1] from None
    if len(ctx.hedge_losers) or won:
        metrics.hedges.labels("hedge" if won else "primary").inc()
    for index in range(len(ctx.hedge_losers) + 1):  # the racers started
        if index != won:  # cancelled: an attempt, without a verdict on its provider
            loser = raced[index][0]
            metrics.upstream_attempts.labels(loser.name, "hedge_lost").inc()
            loser.state.breaker.abandon()  # a half-open trial must not stay taken
    return raced[won][0], response


async def _attempt(
    ctx: RequestContext,
    runtime: Runtime,
    provider: Provider,
    target: Target,
    call: Call,
    answer: Answer,
) -> web.StreamResponse:
    """One upstream attempt, in a client span of its own when tracing is on."""
    if not provider.adapter.fetches_image_urls:
        call = await _inlined(call, runtime, provider)
    span = start_attempt(ctx, provider.name, provider.config.type, target.model)
    if span is None:
        return await _send(ctx, provider, target, call, answer, None)
    try:
        response = await _send(ctx, provider, target, call, answer, span.headers())
    except AttemptFailure as failure:
        span.end(status=failure.status, error=failure.outcome)
        raise
    except BaseException as exc:
        span.end(error="cancelled", lost=hedge.lost(exc))
        raise
    span.end(
        status=response.status,
        error=ctx.error if _broken_stream(ctx) is not None else None,
        response_model=answer_model(response) or ctx.upstream_model,
        usage=(ctx.prompt_tokens, ctx.completion_tokens),
    )
    return response


async def _inlined(call: Call, runtime: Runtime, provider: Provider) -> Call:
    """``call`` with its http(s) image parts inlined, fetched within the provider's
    timeout; a refused or failed image is the request's fault, named by its part."""
    timeout = provider.timeouts.head
    if call.extensions.timeout is not None:
        timeout = min(timeout, call.extensions.timeout)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        return await inline_images(call, runtime.image_policy, deadline)
    except Unsupported as exc:
        raise AttemptFailure("unsupported", str(exc), param=exc.param) from None


async def _send(
    ctx: RequestContext,
    provider: Provider,
    target: Target,
    call: Call,
    answer: Answer,
    trace_headers: Mapping[str, str] | None,
) -> web.StreamResponse:
    try:
        upstream_request = provider.adapter.request(call, target.model, provider.config)
    except Unsupported as exc:
        raise AttemptFailure("unsupported", str(exc), param=exc.param) from None
    if trace_headers:  # W3C traceparent: the provider's spans join the client's trace
        headers = {**upstream_request.headers, **trace_headers}
        upstream_request = dataclasses.replace(upstream_request, headers=headers)
    state = provider.state
    slots = state.semaphore(provider.config.max_concurrency)
    if slots is not None:
        try:
            async with asyncio.timeout(provider.timeouts.head):
                await slots.acquire()
        except TimeoutError:
            raise AttemptFailure("busy", "the provider is at max_concurrency") from None
    state.inflight += 1
    state.requests += 1
    # A stream's head comes at its first token; a whole answer's when it is done, so
    # it may take response_timeout (head and body), and taking long is not a fault.
    timeouts = provider.timeouts.for_answer(call.stream)
    if call.extensions.timeout is not None:  # x-gateway.timeout: never past the provider's
        timeouts = replace(timeouts, head=min(timeouts.head, call.extensions.timeout))
    deadline = None if call.stream else asyncio.get_running_loop().time() + timeouts.head
    try:
        began = time.perf_counter()
        try:
            upstream = await provider.transport.send(upstream_request, timeouts)
        except AttemptFailure as failure:
            if deadline is None or failure.kind != "timeout" or failure.reason != "timeout":
                raise
            raise _late_answer(failure.detail) from None
        waited = time.perf_counter() - began
        ctx.upstream_wait += waited
        state.observe_latency(waited, target.model)
        adapter = provider.adapter
        try:
            if upstream.status >= 400:
                status = adapter.failure_status(upstream.status)
                raise _status_failure(status, upstream.headers, await _body(upstream, deadline))
            ctx.provider, ctx.upstream_model = provider.name, target.model
            ctx.dropped = upstream_request.dropped
            if relay.is_binary(upstream, call):  # audio, transcripts: through with their type
                return await relay.binary(ctx, upstream, answer)
            if relay.is_event_stream(upstream):
                translator = adapter.stream(call, target.model)
                if translator is None:
                    return await relay.stream(ctx, adapter, upstream, answer)
                return await relay.translated_stream(
                    ctx, translator, upstream, call.client_format, answer
                )
            body = await _body(upstream, deadline)
            parsed = parse_answer(body)
            usage = adapter.usage_of(parsed)
            body = adapter.response(call, target.model, body, parsed)
            return relay.json_response(ctx, upstream.status, body, usage, answer)
        finally:
            upstream.close()
    finally:
        state.inflight -= 1
        if slots is not None:
            slots.release()


async def _body(upstream: UpstreamResponse, deadline: float | None) -> bytes:
    """The whole body, by ``deadline`` (loop time) when given; a read that breaks is
    the attempt's failure."""
    timer = None
    try:
        if upstream.complete:  # most small answers came with their head: no clock needed
            return await upstream.read()
        timer = asyncio.timeout_at(deadline)
        async with timer:
            return await upstream.read()
    except TRANSPORT_ERRORS as exc:
        if timer is not None and timer.expired():
            raise _late_answer("the body was not whole within response_timeout") from None
        raise failure_from(exc) from None


def _late_answer(detail: str) -> AttemptFailure:
    """A non-streamed answer not done within ``response_timeout``: the request was long,
    which says nothing about the provider's health (a connect that timed out does)."""
    return AttemptFailure(
        "timeout",
        "the provider did not finish its answer in time",
        reason="response_timeout",
        detail=detail,
    )


def _status_failure(status: int, headers: Mapping[str, str], body: bytes) -> AttemptFailure:
    return AttemptFailure(
        "status",
        f"the provider answered {status}",
        status=status,
        retry_after=retry_after(headers),
        body=body,
        content_type=headers.get("Content-Type", "application/json"),
    )


def _client_error(
    ctx: RequestContext, provider: Provider, call: Call, failure: AttemptFailure
) -> web.Response:
    """A provider's 4xx about the request itself: the client's to see, in its dialect."""
    ctx.provider = provider.name
    ctx.error = failure.outcome
    ctx.first_byte = time.perf_counter()
    status = failure.status or 400
    body = provider.adapter.error_body(call, status, failure.body)
    body = provider_rejection(status, body, call.client_format, provider_secrets(provider.config))
    headers = verdict.client_retry_after([(provider.name, failure)]) if status == 429 else None
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _record_failure(
    metrics: Metrics, provider: Provider, failure: AttemptFailure, threshold: int
) -> None:
    metrics.upstream_attempts.labels(provider.name, failure.outcome).inc()
    state = provider.state
    if failure.kind in ("busy", "unsupported"):  # nothing the provider did (or saw)
        state.breaker.abandon()
        return
    status = failure.status or 0
    if failure.kind == "status" and status < 500 and status not in (401, 403, 429):
        state.breaker.success()  # the provider is up; the request was at fault
        return
    state.errors += 1
    state.last_error = failure.outcome
    if status == 429 or failure.reason == "response_timeout":
        # Rate limited, or a long generation: the provider is up, and one client's
        # requests must not open the circuit for every other client.
        state.breaker.abandon()
    else:  # refused, reset, DNS, TLS, 5xx, 401/403, a stream's timeout, a broken body
        state.breaker.failure(threshold)
        _show_circuit(metrics, provider)
    detail = f" ({failure.detail})" if failure.detail else ""
    log.warning("upstream attempt failed: %s: %s%s", provider.name, failure.message, detail)


# How a stream the provider broke after its first byte left ``ctx.error`` (relay).
_BROKEN = {"timeout": "timeout", "stream_error": "stream_error", "stream_truncated": "stream_error"}


def _broken_stream(ctx: RequestContext) -> AttemptFailure | None:
    """The provider's failure of a stream already relayed in part (silent past
    read_timeout, cut, an error event, no end), or None: such a stream is not a success."""
    kind = _BROKEN.get(ctx.error or "")
    if kind is None:
        return None
    message = "the provider's stream broke after its first byte"
    return AttemptFailure(kind, message, reason=ctx.error)


def _record_success(metrics: Metrics, provider: Provider) -> None:
    metrics.upstream_attempts.labels(provider.name, "success").inc()
    was_closed = provider.state.breaker.state == "closed"
    provider.state.breaker.success()
    if not was_closed:
        _show_circuit(metrics, provider)


def _show_circuit(metrics: Metrics, provider: Provider) -> None:
    metrics.circuit_state.labels(provider.name).set(CIRCUIT_STATES[provider.state.breaker.state])
