"""CPU cost of one smart-routing decision, in-process (run on demand, prints figures):

    python -m tests.benchmarks.routing_decision

Times ``routing.plan.plan`` for ``auto`` over 7 candidates (classifier, capability
filter, scoring), a weighted pool, and an ordered alias, with ``time.process_time``.
"""

from __future__ import annotations

import asyncio
import time

from llmgw.api.calls import parse_call
from llmgw.config import parse
from llmgw.http.client import Pool
from llmgw.plan import plan
from llmgw.routing.classifier import classify
from llmgw.routing.state import RoutingState
from llmgw.runtime import ProviderStates, build_runtime

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
N = 20_000


async def main() -> None:
    pool = Pool(user_agent="bench", max_body=1 << 20)  # needs a running loop; never used
    runtime = build_runtime(parse(CONFIG, environ={}), ProviderStates(), pool)
    state = RoutingState()
    for model in ("auto", "cheap", "pool", "chain"):
        call = parse_call("chat", PROMPT % model.encode())
        plan(runtime, call, state)  # warm
        began = time.process_time()
        for _ in range(N):
            plan(runtime, call, state)
        per = (time.process_time() - began) / N * 1000
        print(f"plan({model:5}): {per:.4f} ms CPU per request")
    call = parse_call("chat", PROMPT % b"auto")
    began = time.process_time()
    for _ in range(N):
        classify(call.body)
    print(f"classify alone: {(time.process_time() - began) / N * 1e6:.2f} us")
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
