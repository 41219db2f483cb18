"""Run the benchmarks: ``python -m tests.benchmarks [--quick] [--profile]``.

The upstream alone, the bare proxy and llmgw (and LiteLLM, if installed) are
measured in one run, each server pinned to one core with the load generator and
the upstream on the other; the table gives medians and ratios, then a verdict on
every target.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop

from . import costs, report, runner, targets, wrk
from .procs import Process, core_times, cores
from .scenarios import FULL, QUICK, Bench, Target
from .targets import MODEL


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition, short runs (~1 min)")
    parser.add_argument(
        "--profile", action="store_true", help="also profile llmgw (and the bare proxy) with py-spy"
    )
    parser.add_argument("--profile-only", action="store_true", help="only the profiles")
    parser.add_argument("--python-load", action="store_true", help="never use wrk")
    parser.add_argument("--skip-held", action="store_true", help="skip the 1,000 streams")
    parser.add_argument("--litellm", help=f"litellm executable (else ${targets.LITELLM_ENV})")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir's logs")
    parser.add_argument(
        "--features",
        action="store_true",
        help="instead: each part-two feature's CPU cost per request (tests/benchmarks/costs.py)",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    server_core, load_core = cores()
    os.sched_setaffinity(0, {load_core})
    workdir = Path(tempfile.mkdtemp(prefix="llmgw-bench-"))
    use_wrk = bool(wrk.available()) and not args.python_load
    bench = Bench(plan, workdir, server_core, load_core, use_wrk, targets.revision())
    if not use_wrk:
        bench.notes.append("wrk not used: the Python load generator ran the closed loops")
    if server_core == load_core:
        bench.notes.append("one CPU only: servers and load share it; only ratios mean much")
    litellm = targets.find_litellm(args.litellm)
    if not litellm:
        bench.notes.append(f"LiteLLM skipped: not installed (set ${targets.LITELLM_ENV})")

    upstream = targets.upstream(workdir, load_core)
    servers: list[Process] = [upstream]
    results: dict[str, runner.Figures] = {}
    profile = ""
    began, cpu_before = time.monotonic(), core_times()
    try:
        await upstream.start()
        servers.append(targets.bare_proxy(workdir, server_core, upstream.port))
        servers.append(gateway := targets.llmgw(workdir, server_core, upstream.port))
        if litellm:
            servers.append(targets.litellm(workdir, server_core, upstream.port, litellm))
        for server in servers[1:]:
            await server.start()
        chosen = [
            Target(server.name, server, model=targets.AUTO if server is gateway else MODEL)
            for server in servers
        ]
        if not args.profile_only:
            results = await runner.measure_all(bench, chosen, upstream, args.skip_held)
        llmgw = Target(gateway.name, gateway, model=targets.AUTO)
        bench.notes.append(await runner.llmgw_features(llmgw))
        if args.profile or args.profile_only:
            upstream.pin(load_core)
            bare = Target(servers[1].name, servers[1])
            profile = await runner.profile(bench, llmgw, gateway=True)
            profile += "\n\n" + await runner.profile(bench, bare, gateway=False)
    finally:
        for server in reversed(servers):
            server.stop()
    bench.notes.append(_background(began, cpu_before))
    _print(args, bench, results, profile, time.monotonic() - began)
    if not args.keep:
        costs.tidy(workdir)
    return 0


def _background(began: float, before: dict[int, tuple[int, int]]) -> str:
    """CPU used on the machine by processes other than this run's, while it ran."""
    after = core_times()
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(after[c][0] - before[c][0] for c in after) / ticks
    ours = sum(
        getattr(resource.getrusage(who), field)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for field in ("ru_utime", "ru_stime")
    )
    seconds = time.monotonic() - began
    other = max(0.0, busy - ours)
    share = other / (seconds * len(after))
    return f"other processes used {other:.0f} CPU-s ({share:.0%} of the machine) during the run" + (
        "; throughput and latency figures are disturbed" if share > 0.05 else ""
    )


def _print(
    args: argparse.Namespace,
    bench: Bench,
    results: dict[str, runner.Figures],
    profile: str,
    took: float,
) -> None:
    plan = bench.plan
    kind = "quick" if args.quick else "full"
    load = "wrk" if bench.use_wrk else "python"
    print(
        f"llmgw benchmarks ({kind}: {plan.reps} repetitions, medians; load by {load}; {took:.0f} s)"
    )
    print(f"llmgw measured: {bench.revision}")
    if results:
        report.add_derived(results)
        print(report.table(results, "n/a (cache not implemented)"))
        print()
        print(report.verdicts(report.targets(results)))
        for line in report.reach(results):
            print(line)
    for note in bench.notes:
        print(f"note: {note}")
    if profile:
        print()
        print(profile)
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.features:
        return uvloop.run(costs.run(args.quick, args.python_load, args.keep))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
