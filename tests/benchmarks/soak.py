"""Soak: mixed traffic with faults injected, for minutes, watching the gateway's memory.

    python -m tests.benchmarks.soak [--minutes 10] [--workers 16]
    python -m tests.benchmarks.soak --minutes 1          # quick mode

Three upstreams on 127.0.0.1: the fast benchmark upstream (its own process), a faulty
one that answers each connection with a fault drawn at random (resets before and
after the headers, hangs past the timeout, 500/429, malformed JSON, truncated or
dripped streams, HTML), and the built-in mock. The gateway runs in its own process
(``--serve``, with one extra route reporting its asyncio task count). Clients send
chat (JSON and streams, unique and repeated), fallback chains through the faulty
provider, embeddings and Anthropic messages, invalid requests, admin calls, and they
misbehave: they leave mid-stream and read slowly.

Each second the gateway's RSS, open file descriptors and tasks are sampled. After a
warm-up (a fifth of the run, at least 20 s) the RSS slope is fitted by least squares,
in MiB per minute, over the whole steady phase and over its second half: a leak keeps
growing, an allocator settling levels off, so the verdict reads the second half. At
the end, with traffic stopped and clients gone, descriptors and tasks must be back to
what they were before the run (upstream connections the pool keeps alive are counted
apart). Exit status 1 when memory still grew, a descriptor or a task leaked, or the
gateway answered a 500. ``--trace`` adds tracemalloc's view of where memory grew.
A one-minute run is a smoke test (memory is judged from four minutes of steady load
on); flatness needs the ten minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.fault_fakes import (
    RawUpstream,
    raw_upstream,
)

from .procs import HOST, Process, cores, free_port
from .soak_traffic import Tally, faulty, gateway_config, workers

SLOPE_LIMIT = 0.5  # MiB per minute, over the second half of the steady phase
JUDGED_AFTER = 240.0  # seconds of steady phase needed before memory is judged
SLACK = 2  # descriptors or tasks of noise allowed between idle samples


# The gateway process ---------------------------------------------------------------------


async def _state(request: web.Request) -> web.Response:
    """Tasks, and the upstream connections the pool keeps alive (each holds a descriptor)."""
    from llmgw.server.appkeys import POOL

    pooled = len(request.app[POOL].connections)
    return web.json_response({"tasks": len(asyncio.all_tasks()), "pooled": pooled})


async def _snapshot(request: web.Request) -> web.Response:
    """With ``--trace``: the first call takes the baseline, later ones answer the lines
    whose allocations grew most since."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    taken = request.app[SNAPSHOTS]
    taken.append(snapshot)
    if len(taken) == 1:
        return web.Response(text="baseline taken")
    top = snapshot.compare_to(taken[0], "lineno")[:15]
    return web.Response(text="\n".join(str(stat) for stat in top))


SNAPSHOTS = web.AppKey("soak_snapshots", list[tracemalloc.Snapshot])


def serve(config_path: str, port: int, trace: bool = False) -> int:
    """The gateway, as ``llmgw`` runs it, plus ``GET /__soak`` (its task count) and,
    with ``trace``, ``POST /__soak/snapshot`` (where memory grew)."""
    import uvloop

    from llmgw.app import create_app
    from llmgw.config import load
    from llmgw.observe import logs
    from llmgw.server.lifecycle import MANAGE_LOGGING
    from llmgw.server.lifecycle import serve as run

    config = load(config_path)
    logs.configure(config.logging.level, config.logging.format)
    app = create_app(config, config_path=config_path)
    app[MANAGE_LOGGING] = True
    app.router.add_get("/__soak", _state)
    if trace:
        tracemalloc.start()
        app[SNAPSHOTS] = []
        app.router.add_post("/__soak/snapshot", _snapshot)
    uvloop.run(run(app, HOST, port, 5.0))
    return 0


# Sampling --------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    tasks: int


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def state_of(base: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(base + "/__soak") as response:
        state: dict[str, int] = await response.json()
        return state


async def sampler(gateway: Process, base: str, until: float, samples: list[Sample]) -> None:
    began = time.monotonic()
    while time.monotonic() < until:
        samples.append(
            Sample(
                time.monotonic() - began,
                gateway.rss_mib(),
                fd_count(gateway.pid),
                (await state_of(base))["tasks"],
            )
        )
        await asyncio.sleep(1.0)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


async def idle_state(gateway: Process, base: str) -> tuple[int, int]:
    """(descriptors, tasks) once nothing is in flight and the clients are gone; the
    upstream connections the pool keeps alive are not counted as descriptors."""
    await asyncio.sleep(2.0)
    state = await state_of(base)
    return fd_count(gateway.pid) - state["pooled"], state["tasks"]


# The run ---------------------------------------------------------------------------------------


async def soak(minutes: float, count: int, trace: bool = False) -> int:
    seconds = minutes * 60
    warm_up = max(20.0, seconds / 5)
    server_core, other_core = cores()
    workdir = Path(tempfile.mkdtemp(prefix="llmgw-soak-"))
    fast_port, gateway_port = free_port(), free_port()
    fast = Process(
        "upstream",
        [sys.executable, "-m", "tests.benchmarks.upstream", "--port", str(fast_port)],
        fast_port,
        other_core,
        workdir / "upstream.log",
    )
    async with raw_upstream() as bad:
        bad.default = faulty
        config = workdir / "gateway.yaml"
        rpm = warm_up >= 60
        config.write_text(gateway_config(f"http://{HOST}:{fast_port}/v1", bad.url, rpm))
        argv = [sys.executable, "-m", "tests.benchmarks.soak", "--serve", str(config)]
        argv += ["--trace"] if trace else []
        gateway = Process(
            "gateway",
            [*argv, "--port", str(gateway_port)],
            gateway_port,
            server_core,
            workdir / "gateway.log",
        )
        base = f"http://{HOST}:{gateway_port}"
        try:
            await fast.start()
            await gateway.start()
            before_fds, before_tasks = await idle_state(gateway, base)
            print(
                f"soak: {minutes:g} min, {count} clients, warm-up {warm_up:.0f} s; logs in {workdir}"
            )
            print(
                f"idle before: {before_fds} fds, {before_tasks} tasks, {gateway.rss_mib():.1f} MiB RSS"
            )
            tally, samples = Tally(), []
            until = time.monotonic() + seconds
            jobs = [workers(base, count, until, tally), sampler(gateway, base, until, samples)]
            if trace:
                jobs.append(_snapshot_after(base, warm_up))
            await asyncio.gather(*jobs)
            if trace:
                print("allocations that grew since the warm-up (tracemalloc):")
                print(await _snapshot_after(base, 0))
            await _drain(bad)
            lines = [f"{x.at:.1f},{x.rss_mib:.2f},{x.fds},{x.tasks}" for x in samples]
            (workdir / "samples.csv").write_text("\n".join(["s,rss_mib,fds,tasks", *lines]))
            after_fds, after_tasks = await idle_state(gateway, base)
            return report(
                tally, samples, warm_up, (before_fds, before_tasks), (after_fds, after_tasks)
            )
        finally:
            gateway.stop()
            fast.stop()


async def _snapshot_after(base: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + "/__soak/snapshot") as response,
    ):
        return await response.text()


async def _drain(upstream: RawUpstream) -> None:
    for _ in range(50):
        if not upstream.handlers:
            return
        await asyncio.sleep(0.1)


def report(
    tally: Tally,
    samples: list[Sample],
    warm_up: float,
    before: tuple[int, int],
    after: tuple[int, int],
) -> int:
    total = sum(tally.kinds.values())
    duration = samples[-1].at if samples else 0.0
    steady = [s for s in samples if s.at >= warm_up]
    late = steady[len(steady) // 2 :]
    rss_slope = slope([(s.at / 60, s.rss_mib) for s in steady])
    late_slope = slope([(s.at / 60, s.rss_mib) for s in late])
    print(f"\nrequests: {total} in {duration:.0f} s ({total / max(duration, 1):.0f}/s)")
    print("by kind:   " + ", ".join(f"{k} {v}" for k, v in tally.kinds.most_common()))
    print("by status: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.statuses.items())))
    if steady:
        rss = [s.rss_mib for s in steady]
        print(
            f"RSS after warm-up: start {rss[0]:.1f} MiB, end {rss[-1]:.1f} MiB, "
            f"min {min(rss):.1f}, max {max(rss):.1f} ({len(steady)} samples)"
        )
        print(
            f"RSS slope after warm-up: {rss_slope:+.3f} MiB/min; "
            f"over its second half: {late_slope:+.3f} MiB/min"
        )
    print(
        f"RSS overall: {samples[0].rss_mib:.1f} -> {samples[-1].rss_mib:.1f} MiB" if samples else ""
    )
    fds = [s.fds for s in samples]
    tasks = [s.tasks for s in samples]
    if samples:
        print(
            f"fds under load: min {min(fds)}, max {max(fds)}; tasks under load: min {min(tasks)}, max {max(tasks)}"
        )
    print(f"idle after: {after[0]} fds (before {before[0]}), {after[1]} tasks (before {before[1]})")
    problems = []
    judged = duration - warm_up >= JUDGED_AFTER
    if not judged:
        print(f"memory not judged: the steady phase is under {JUDGED_AFTER / 60:.0f} minutes")
    elif late_slope > SLOPE_LIMIT:  # a leak keeps growing; a settling allocator levels off
        problems.append(f"RSS still grows {late_slope:.2f} MiB/min (limit {SLOPE_LIMIT})")
    if after[0] > before[0] + SLACK:
        problems.append(f"descriptors leaked: {after[0] - before[0]}")
    if after[1] > before[1] + SLACK:
        problems.append(f"tasks leaked: {after[1] - before[1]}")
    if tally.server_errors:
        problems.append(
            f"{len(tally.server_errors)} answers were 500: {collections.Counter(tally.server_errors)}"
        )
    good = "no leaked descriptor or task, no 500" + ("; flat memory" if judged else "")
    print("\nverdict: " + ("; ".join(problems) if problems else good))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="length of the run (default 10)"
    )
    parser.add_argument("--workers", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument(
        "--trace", action="store_true", help="tracemalloc in the gateway: where memory grew"
    )
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.port, args.trace)
    import uvloop

    return uvloop.run(soak(args.minutes, args.workers, args.trace))


if __name__ == "__main__":
    sys.exit(main())
