"""One benchmark run: every server started once, the repetitions interleaved across
targets (so a burst of noise on the machine does not land on one target only),
then cache hits, then the 1,000 streams on freshly restarted servers, then the
optional profile.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from . import bodies, features, loadgen, profiling, report
from .client import Result
from .procs import HOST, Process, wait_for_quiet
from .scenarios import (
    Bench,
    Target,
    answers,
    cache_hits,
    held_open,
    medians,
    non_streamed,
    streamed,
    warm_up,
)

Figures = dict[str, float | None]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def measure_all(
    bench: Bench, chosen: list[Target], upstream: Process, skip_held: bool
) -> dict[str, Figures]:
    plan = bench.plan

    def place(target: Target) -> None:
        """The upstream alone is the server under test; otherwise it sits with the load."""
        upstream.pin(bench.server_core if target.process is upstream else bench.load_core)

    runs: dict[str, list[Figures]] = {t.name: [] for t in chosen}
    for target in chosen:
        place(target)
        say(f"{target.name}: warm-up")
        await warm_up(bench, target)
    for rep in range(plan.reps):
        for target in chosen:
            place(target)
            await _quiet(bench, f"{target.name} repetition {rep + 1}")
            say(f"{target.name}: repetition {rep + 1}/{plan.reps}")
            runs[target.name].append(
                await non_streamed(bench, target) | await streamed(bench, target)
            )
    upstream.pin(bench.load_core)
    for target in chosen:
        if target.name == report.BARE:
            for rep in range(plan.reps):
                say(f"{target.name}: answering from memory {rep + 1}/{plan.reps}")
                runs[target.name][rep] |= await answers(bench, target)
        if target.name != report.LLMGW:
            continue
        for rep in range(plan.reps):
            say(f"{target.name}: cache hits {rep + 1}/{plan.reps}")
            hits = await cache_hits(bench, target)
            if not hits:
                break
            runs[target.name][rep] |= hits
    if not skip_held:
        for target in chosen:
            await _held(bench, target, runs[target.name], fresh=target.process is not upstream)
    return {name: medians(figures) for name, figures in runs.items()}


async def _held(bench: Bench, target: Target, runs: list[Figures], fresh: bool) -> None:
    """The upstream's own figures here are the harness check: it runs on the load
    generator's core, as it does behind every proxy."""
    plan = bench.plan
    if fresh:  # peak RSS of a fresh process, not of everything measured before
        target.process.stop()
        await target.process.start()
    for rep in range(plan.held_reps):
        await _quiet(bench, f"{target.name} {plan.held} streams")
        say(f"{target.name}: {plan.held} streams held open {rep + 1}/{plan.held_reps}")
        while len(runs) <= rep:
            runs.append({})
        runs[rep] |= await held_open(bench, target, warm=rep == 0)


async def _quiet(bench: Bench, what: str) -> None:
    """Start each measurement when the machine is quiet (others may share it)."""
    busiest = await wait_for_quiet()
    if busiest > 0.1:
        bench.notes.append(f"machine busy ({busiest:.0%} of a core) when {what} started")


async def llmgw_features(target: Target) -> str:
    await target.process.settle()  # done with what the load left behind
    active = await features.probe(target)
    for _ in range(20):  # llmgw writes info lines in batches, every half second at most
        active["json logs"] = features.json_logs(target.process.log.read_text(errors="replace"))
        if active["json logs"] == "on":
            break
        await asyncio.sleep(0.1)
    return "llmgw features: " + ", ".join(f"{k} {v}" for k, v in active.items())


async def _rounds(seconds: float, once: Callable[[], Awaitable[list[Result]]]) -> int:
    deadline, count = time.monotonic() + seconds, 0
    for _ in range(100):
        if time.monotonic() >= deadline:
            break
        count += sum(r.ok for r in await once())
    return count


async def profile(bench: Bench, target: Target, gateway: bool, seconds: float = 11) -> str:
    """py-spy on ``target`` under non-streamed and streamed load (and, for the
    ``gateway``, 1,000 paced streams and cache hits), each function's share also in
    microseconds per request."""
    if not profiling.available():
        return "profile skipped: py-spy is not installed (pip install py-spy)"
    plan = bench.plan
    non_streamed_body = bodies.chat(stream=False, chunks=16)
    streamed_body = bodies.chat(stream=True, chunks=plan.chunks)
    paced_body = bodies.chat(stream=True, chunks=plan.chunks, delay_ms=plan.delay_ms)

    async def closed(body: bytes) -> int:
        return (await bench.closed(target, body, plan.conns, seconds)).requests

    def held_round() -> Awaitable[list[Result]]:
        return loadgen.held_open(HOST, target.port, bench.maker(target, paced_body), plan.held, 60)

    async def held() -> int:
        return await _rounds(seconds, held_round)

    loads: dict[str, Callable[[], Awaitable[int]]] = {
        "non-streamed, 64 connections": lambda: closed(non_streamed_body),
        "streamed unpaced, 64 connections": lambda: closed(streamed_body),
    }
    if gateway:
        await held_round()  # fill the gateway's pool of upstream connections first
        loads["1,000 paced streams"] = held
        hit = bodies.chat(stream=False, chunks=16, unique=False)
        await bench.timed(target, hit, 10, 1)  # fill the cache
        loads["cache hits, non-streamed, 64 connections"] = lambda: closed(hit)
    out = []
    for name, load in loads.items():
        raw = bench.workdir / f"profile-{target.name.replace(' ', '-')}-{len(out)}.txt"
        say(f"profiling {target.name}: {name}")
        before = target.process.cpu_seconds()
        error, count = await profiling.record(target.process.pid, seconds - 1, raw, load())
        cpu_ms = (target.process.cpu_seconds() - before) * 1000 / max(1, count)
        summary = error or profiling.summarise(raw, cpu_ms)
        out.append(f"--- {target.name} profile: {name}, {cpu_ms:.3f} ms CPU per request ({raw})"
                   f" ---\n{summary}")  # fmt: skip
    return "\n\n".join(out)
