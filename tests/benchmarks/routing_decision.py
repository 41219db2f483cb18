"""CPU cost of one routing decision, in-process (run on demand, prints figures):

    python -m tests.benchmarks.routing_decision

Times what a request pays for routing: ``api.routing.route`` (the plan with its
classifier and prompt estimate, the decision metric, the recent-decisions ring) and
the ``X-LLMGW-Routing`` line the middleware writes, with ``time.process_time``. For
``auto``, ``cheap`` and ``fast`` over 7 candidates, a weighted pool, an ordered alias
and a plain ``provider/model``. Each figure is the median of ``ROUNDS`` runs (all
runs shown), with a verdict against issue 17's ``BUDGET_MS`` (0.02 ms). The call's
memo is cleared every time, so the prompt estimate is paid every time. CPU time is
the process's own, but a loaded machine still slows it: note the load average shown.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from llmgw.api.calls import parse_call
from llmgw.api.routing import route
from llmgw.config import parse
from llmgw.core import RequestContext
from llmgw.http.client import Pool
from llmgw.observe.metrics import Metrics
from llmgw.routing.classifier import classify
from llmgw.routing.state import RoutingState
from llmgw.runtime import ProviderStates, Runtime, build_runtime
from llmgw.server.appkeys import METRICS, ROUTING

CONFIG = """
providers:
  openai: {type: openai, api_key: k, models: [gpt-4o, gpt-4o-mini]}
  anthropic: {type: anthropic, api_key: k, models: [claude-sonnet-4-5, claude-haiku-4-5]}
  gemini: {type: gemini, api_key: k, models: [gemini-2.5-flash, gemini-2.5-pro]}
  demo: {type: mock, models: [echo]}
models:
  pool: {strategy: weighted, targets: [{target: openai/gpt-4o-mini, weight: 3}, {target: demo/echo}]}
  chain: [openai/gpt-4o, demo/echo]
"""
PROMPT = (
    b'{"model": "%s", "messages": [{"role": "system", "content": "You are helpful."},'
    b' {"role": "user", "content": "Can you explain how to sort a list of tuples by the'
    b' second element in Python, and why the key argument is faster than cmp?"}]}'
)
MODELS = ("auto", "cheap", "fast", "pool", "chain", "openai/gpt-4o")
N = 20_000
ROUNDS = 5
BUDGET_MS = 0.02  # issue 17: routing adds under 0.02 ms CPU per request


def per_request(request: web.Request, runtime: Runtime, model: str) -> float:
    """ms of CPU for one request's routing, over ``N`` requests."""
    call = parse_call("chat", PROMPT % model.encode())
    ctx = RequestContext("bench", 0.0)
    began = time.process_time()
    for _ in range(N):
        call.memo.clear()  # each request estimates its prompt anew
        targets = route(request, ctx, runtime, call)
        ctx.provider, ctx.upstream_model = targets[0].provider, targets[0].model
        ctx.routing_line()  # the header is written for every answer
    return (time.process_time() - began) / N * 1000


async def main() -> None:
    pool = Pool(user_agent="bench", max_body=1 << 20)  # needs a running loop; never used
    runtime = build_runtime(parse(CONFIG, environ={}), ProviderStates(), pool)
    app = web.Application()
    metrics = Metrics()
    app[METRICS], app[ROUTING] = metrics, RoutingState(metrics.routing_decisions.counts)
    request = make_mocked_request("POST", "/v1/chat/completions", app=app)
    figures: dict[str, list[float]] = {model: [] for model in MODELS}
    for _ in range(ROUNDS):  # interleaved, so that a noisy neighbour hits every model
        for model in MODELS:
            figures[model].append(per_request(request, runtime, model))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cpus)")
    for model, runs in figures.items():
        median = statistics.median(runs)
        verdict = "under" if median < BUDGET_MS else "OVER"
        shown = " ".join(f"{run:.4f}" for run in runs)
        print(
            f"route({model:13}): {median:.4f} ms CPU per request (median of {ROUNDS}: {shown})"
            f" -> {verdict} {BUDGET_MS} ms"
        )
    body = parse_call("chat", PROMPT % b"auto").body
    began = time.process_time()
    for _ in range(N):
        classify(body)
    print(f"classify alone: {(time.process_time() - began) / N * 1e6:.2f} us")
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
