"""The measurements. Each scenario is one function of a target that returns named
figures (seconds, milliseconds, ratios); ``__main__`` repeats them and keeps medians.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from . import bodies, loadgen, wrk
from .client import Result, build_request
from .procs import HOST, busy_share, core_times
from .targets import MODEL, Target


@dataclass(frozen=True)
class Plan:
    reps: int  # repetitions of every closed-loop and timing scenario
    seconds: float  # length of one closed-loop run
    light_rate: float  # requests per second for "added latency at light load"
    light_count: int
    ttfb_rate: float
    ttfb_count: int
    paced_waves: int  # streams per connection in the paced scenario
    held_reps: int
    held: int = 1000
    chunks: int = 50
    delay_ms: int = 20
    conns: int = 64
    latency_conns: int = 8
    paced_conns: int = 32

    @property
    def ideal(self) -> float:
        """How long a paced stream takes when nothing but the pacing costs time."""
        return (self.chunks - 1) * self.delay_ms / 1000


QUICK = Plan(reps=1, seconds=2, light_rate=100, light_count=150, ttfb_rate=50, ttfb_count=75,
             paced_waves=2, held_reps=1)  # fmt: skip
FULL = Plan(reps=3, seconds=4, light_rate=100, light_count=400, ttfb_rate=50, ttfb_count=200,
            paced_waves=3, held_reps=2)  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One closed-loop run against a target, with the target's CPU over it."""

    requests: int
    seconds: float
    errors: int
    cpu: float  # seconds of the server's CPU
    p50: float | None
    p99: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu * 1000 / max(1, self.requests)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Bench:
    plan: Plan
    workdir: Path
    server_core: int
    load_core: int
    use_wrk: bool
    revision: str = ""  # which llmgw code was measured
    notes: list[str] = field(default_factory=list)

    def maker(self, target: Target, body: bytes) -> loadgen.MakeRequest:
        """Requests for one load run: ``body`` for the target's model, with a fresh
        nonce, numbered."""
        body = bodies.fresh(bodies.for_model(body, target.model))

        def make(number: int) -> bytes:
            return build_request(
                HOST, target.port, target.path, bodies.numbered(body, number), target.key
            )

        return make

    async def closed(self, target: Target, body: bytes, conns: int, seconds: float) -> Run:
        """Closed loop: wrk where installed, else the Python generator."""
        process = target.process
        body = bodies.fresh(bodies.for_model(body, target.model))
        if self.use_wrk:
            script = wrk.write_script(
                self.workdir / "load.lua",
                body,
                target.path,
                target.key,
                unique=bodies.MARK.encode() in body,
            )
            before = process.cpu_seconds()
            done = await wrk.run(target.url, script, conns, seconds, self.load_core)
            cpu = process.cpu_seconds() - before
            return Run(done.requests, done.seconds, done.errors, cpu, done.p50, done.p99)
        before = process.cpu_seconds()
        results, elapsed = await loadgen.closed_loop(
            HOST, target.port, self.maker(target, body), conns, seconds, max_requests=200_000
        )
        cpu = process.cpu_seconds() - before
        good = [r for r in results if r.ok]
        latencies = [r.latency for r in good]
        return Run(
            len(good),
            elapsed,
            len(results) - len(good),
            cpu,
            pct(latencies, 50),
            pct(latencies, 99),
        )

    async def timed(self, target: Target, body: bytes, rate: float, count: int) -> list[Result]:
        return await loadgen.fixed_rate(HOST, target.port, self.maker(target, body), rate, count)

    def errors(self, target: Target, what: str, errors: int, total: int) -> None:
        if errors:
            self.notes.append(f"{target.name}, {what}: {errors} of {total} requests failed")


async def warm_up(bench: Bench, target: Target) -> None:
    plan = bench.plan
    await bench.closed(target, bodies.chat(stream=False, chunks=16), plan.conns, 1)
    await bench.closed(target, bodies.chat(stream=True, chunks=plan.chunks), plan.conns, 1)


async def non_streamed(bench: Bench, target: Target) -> dict[str, float | None]:
    plan = bench.plan
    body = bodies.chat(stream=False, chunks=16)
    full = await bench.closed(target, body, plan.conns, plan.seconds)
    bench.errors(target, "non-streamed at 64 connections", full.errors, full.requests)
    await target.process.settle()  # no backlog left for the latency runs
    few = await bench.closed(target, body, plan.latency_conns, plan.seconds / 2)
    light = await bench.timed(target, body, plan.light_rate, plan.light_count)
    good = [r.latency for r in light if r.ok]
    bench.errors(target, "non-streamed at a light rate", len(light) - len(good), len(light))
    return {
        "rps": full.rps,
        "cpu_ms": full.cpu_ms,
        "p50_8": few.p50,
        "p99_8": few.p99,
        "light_p50": pct(good, 50),
        "light_p99": pct(good, 99),
    }


def _on_time(
    bench: Bench, target: Target, what: str, results: list[Result]
) -> dict[str, float | None]:
    good = [r for r in results if r.ok and bodies.is_complete_stream(r.body)]
    bench.errors(target, what, len(results) - len(good), len(results))
    durations = [r.latency for r in good]
    limit = bench.plan.ideal * 1.1
    return {
        "on_time": sum(d <= limit for d in durations) / max(1, len(results)),
        "p50": pct(durations, 50),
        "max": max(durations, default=None),
    }


async def streamed(bench: Bench, target: Target) -> dict[str, float | None]:
    plan = bench.plan
    fast = bodies.chat(stream=True, chunks=plan.chunks)
    full = await bench.closed(target, fast, plan.conns, plan.seconds)
    bench.errors(target, "streams at 64 connections", full.errors, full.requests)
    await target.process.settle()
    light = await bench.timed(target, fast, plan.ttfb_rate, plan.ttfb_count)
    good = [r for r in light if r.ok and bodies.is_complete_stream(r.body)]
    bench.errors(target, "streams at a light rate", len(light) - len(good), len(light))
    paced = bodies.chat(stream=True, chunks=plan.chunks, delay_ms=plan.delay_ms)
    before = target.process.cpu_seconds()
    results = await loadgen.streams_in_waves(
        HOST, target.port, bench.maker(target, paced), plan.paced_conns, plan.paced_waves,
        timeout=plan.paced_waves * plan.ideal * 3 + 10,
    )  # fmt: skip
    cpu = target.process.cpu_seconds() - before
    timing = _on_time(bench, target, "paced streams", results)
    return {
        "stream_rps": full.rps,
        "stream_cpu_ms": full.cpu_ms,
        "ttfb_p50": pct([r.ttfb for r in good], 50),
        "ttfb_p99": pct([r.ttfb for r in good], 99),
        "paced_cpu_ms": cpu * 1000 / max(1, len(results)),
        "paced_on_time": timing["on_time"],
        "paced_p50": timing["p50"],
        "paced_max": timing["max"],
    }


async def cache_hits(bench: Bench, target: Target) -> dict[str, float | None]:
    """Hits only: the body is sent once to fill the cache, then repeated. Empty when
    the target does not answer ``X-Cache: HIT`` on the repeat."""
    plan = bench.plan
    figures: dict[str, float | None] = {}
    for prefix, stream in (("hit", False), ("hit_stream", True)):
        body = bodies.chat(stream=stream, chunks=plan.chunks if stream else 16, unique=False)
        make = bench.maker(target, body)
        first = await bench.timed(target, body, 10, 1)
        second = await bench.timed(target, body, 10, 1)
        if second[0].headers.get("x-cache", "").upper() != "HIT":
            seen = [r.headers.get("x-cache", "none") for r in first + second]
            bench.notes.append(f"{target.name}: no cache hit (X-Cache {' then '.join(seen)})")
            return {}
        run = await bench.closed(target, body, plan.conns, plan.seconds)
        bench.errors(target, f"{prefix} at 64 connections", run.errors, run.requests)
        after = await loadgen.fixed_rate(HOST, target.port, make, 10, 1)
        if after[0].headers.get("x-cache", "").upper() != "HIT":
            bench.notes.append(f"{target.name}: {prefix} answers stopped being hits under load")
        figures[f"{prefix}_rps"], figures[f"{prefix}_cpu_ms"] = run.rps, run.cpu_ms
    return figures


async def answers(bench: Bench, target: Target) -> dict[str, float | None]:
    """The bare proxy's floors: on its ``/answer`` route answering from memory with
    nothing else done (aiohttp's own cost for a request, the floor under any gateway's
    cache hit); on its ``/duties`` route doing a hit's duties (``dutyfloor.py``); and on
    its ``/miss-duties`` route proxying every request (a miss, ``model: auto``) doing a
    miss's duties (``dutymiss.py``)."""
    hit = bodies.chat(stream=False, chunks=16, unique=False)
    figures: dict[str, float | None] = {}
    for prefix, path, body, model, what in (
        ("answer", "/answer/v1/chat/completions", hit, MODEL, "answers from memory"),
        ("duty", "/duties/v1/chat/completions", hit, MODEL, "hits with their duties"),
        ("miss_duty", "/miss-duties/v1/chat/completions", bodies.chat(stream=False, chunks=16),
         "auto", "misses with their duties"),
    ):  # fmt: skip
        floor = Target(target.name, target.process, path=path, model=model)
        run = await bench.closed(floor, body, bench.plan.conns, bench.plan.seconds)
        bench.errors(target, f"{what} at 64 connections", run.errors, run.requests)
        figures[f"{prefix}_rps"], figures[f"{prefix}_cpu_ms"] = run.rps, run.cpu_ms
    return figures


async def held_open(bench: Bench, target: Target, warm: bool) -> dict[str, float | None]:
    """``plan.held`` paced streams at once; ``warm`` runs one unmeasured round first
    (filling the gateway's pool of upstream connections, as steady traffic would)."""
    plan = bench.plan
    body = bodies.chat(stream=True, chunks=plan.chunks, delay_ms=plan.delay_ms)
    timeout = plan.ideal * 10 + 20
    if warm:
        await loadgen.held_open(HOST, target.port, bench.maker(target, body), plan.held, timeout)
    before = core_times()
    results = await loadgen.held_open(
        HOST, target.port, bench.maker(target, body), plan.held, timeout
    )
    after = core_times()
    timing = _on_time(bench, target, f"{plan.held} streams held open", results)
    good = [r for r in results if r.ok]
    return {
        "held_on_time": timing["on_time"],
        "held_p50": timing["p50"],
        "held_max": timing["max"],
        "held_ttfb_p50": pct([r.ttfb for r in good], 50),
        "held_ttfb_max": max((r.ttfb for r in good), default=None),
        "held_body_max": max((r.done - r.first_byte for r in good), default=None),
        "held_body_on_time": sum(r.done - r.first_byte <= plan.ideal * 1.1 for r in good)
        / max(1, len(results)),
        "held_rss": target.process.peak_rss_mib(),
        "held_server_core": busy_share(before, after, bench.server_core),
        "held_load_core": busy_share(before, after, bench.load_core),
    }


def medians(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    keys = {key for run in runs for key in run}
    merged: dict[str, float | None] = {}
    for key in keys:
        values = [v for run in runs if (v := run.get(key)) is not None]
        merged[key] = statistics.median(values) if values else None
    return merged
