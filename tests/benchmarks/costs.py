"""What each part-two feature costs per request: ``python -m tests.benchmarks.costs
[--quick]`` (also ``python -m tests.benchmarks --features``).

llmgw runs once per variant of ``llmgw.yaml``, all at the same time, each from a
config generated into its own folder of the run's work directory (its SQLite ledger
beside it): the full shipped-style config, then the same with one feature turned off
(budgets, the usage ledger, per-IP limits, the JSON access log) or on (tracing to an
OTLP sink that drops, the semantic cache); `auto` routing is turned off by sending the
plain model to the full config's process. Every variant runs the non-streamed closed
loop and the unpaced 50-chunk stream at 64 connections, interleaved (each repetition
in a rotated order), and the table gives each feature's CPU ms per request with and
without it (medians), the difference, and the difference as a share of the full
config's CPU per request. Every variant is then asked whether the feature is on or
off as intended (``features.py``); a variant that is not is named under the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
import yaml

from . import bodies, features, targets, wrk
from .procs import Process, cores, wait_for_quiet
from .scenarios import FULL, QUICK, Bench, Plan
from .targets import AUTO, MODEL, Target

Config = dict[str, Any]


def _no_budgets(config: Config) -> None:
    del config["budgets"]
    for key in config["auth"]["keys"]:
        key.pop("budget", None)


def _no_ledger(config: Config) -> None:
    """No database: no ledger, and no budgets either (they need the database)."""
    _no_budgets(config)
    config["database"] = {"url": ""}


def _no_per_ip(config: Config) -> None:
    del config["limits"]["per_ip"]


def _no_access_log(config: Config) -> None:
    config["logging"]["level"] = "warning"  # access lines are info


def _tracing(config: Config) -> None:
    config["telemetry"] = {"otlp_endpoint": "${BENCH_UPSTREAM_URL}", "sample_ratio": 1.0}


def _semantic(config: Config) -> None:
    config["cache"]["semantic"] = {
        "enabled": True,
        "embedding_model": features.EMBEDDING_MODEL,
        "threshold": 0.95,
        "max_entries": 10_000,  # 10,000 x 1,536 float32: 60 MiB
    }


@dataclass(frozen=True)
class Variant:
    name: str
    change: Callable[[Config], None] | None  # None: the full config as it is
    model: str = AUTO
    process_of: str = ""  # another variant's process, sent a different model


VARIANTS = (
    Variant("full", None),
    Variant("plain model", None, model=MODEL, process_of="full"),
    Variant("no budgets", _no_budgets),
    Variant("no ledger", _no_ledger),
    Variant("no per-IP", _no_per_ip),
    Variant("no access log", _no_access_log),
    Variant("tracing", _tracing),
    Variant("semantic cache", _semantic),
)


@dataclass(frozen=True)
class Feature:
    label: str
    on: str  # the variant with the feature
    off: str  # the variant without it
    probe: str  # features.py's name for it


FEATURES = (
    Feature("auto routing (vs the plain model)", "full", "plain model", "auto routing"),
    Feature("budgets (key + global)", "full", "no budgets", "budgets"),
    Feature("usage ledger, SQLite (budgets off both)", "no budgets", "no ledger", "usage ledger"),
    Feature("per-IP limits", "full", "no per-IP", "per-IP limits"),
    Feature("JSON access log (vs level: warning)", "full", "no access log", "json logs"),
    Feature("tracing, every span to OTLP (added)", "tracing", "full", "tracing"),
    Feature("semantic cache, all misses (added)", "semantic cache", "full", "semantic cache"),
)
FIGURES = (("cpu_ms", "non-streamed"), ("stream_cpu_ms", "50-chunk stream"))


def write_config(workdir: Path, variant: Variant) -> Path:
    """The variant's config, in a folder of its own (its ledger's file goes beside it)."""
    config: Config = yaml.safe_load((targets.HERE / "llmgw.yaml").read_text())
    if variant.change is not None:
        variant.change(config)
    folder = workdir / variant.name.replace(" ", "-")
    folder.mkdir()
    path = folder / "llmgw.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def measure(bench: Bench, target: Target) -> dict[str, float]:
    """CPU per request of each loop, counted until the process is idle again: work it
    does after the load stops (a backlog) is part of what the requests cost."""
    plan = bench.plan
    figures = {}
    for key, stream in (("cpu_ms", False), ("stream_cpu_ms", True)):
        body = bodies.chat(stream=stream, chunks=plan.chunks if stream else 16)
        before = target.process.cpu_seconds()
        run = await bench.closed(target, body, plan.conns, plan.seconds)
        tail = await target.process.settle()
        if tail > 1:
            bench.notes.append(f"{target.name}: busy {tail:.0f} s after the load stopped")
        figures[key] = (target.process.cpu_seconds() - before) * 1000 / max(1, run.requests)
        bench.errors(target, key, run.errors, run.requests)
    return figures


async def state(target: Target, log: Path, sink_port: int) -> dict[str, str]:
    """What ``features.py`` finds at work in one variant's process."""
    found = await features.probe(target)
    if "probe" in found:  # it did not answer
        return found
    found["tracing"] = await features.tracing(target, sink_port)
    found["semantic cache"] = await features.semantic(target)
    for _ in range(20):  # access lines are written in batches, every half second at most
        found["json logs"] = features.json_logs(log.read_text(errors="replace"))
        if found["json logs"] == "on":
            break
        await asyncio.sleep(0.1)
    return found


def checks(states: dict[str, dict[str, str]]) -> list[str]:
    """Each feature on in its ``on`` variant and off in its ``off`` one, else a note.
    The tracing sink counts every process's exports, so only its ``on`` side is read."""
    problems = []
    for feature in FEATURES:
        on = states[feature.on].get(feature.probe, str(states[feature.on]))
        off = states[feature.off].get(feature.probe, str(states[feature.off]))
        if not on.startswith("on"):
            problems.append(f"{feature.label}: not on in '{feature.on}': {on}")
        if feature.probe != "tracing" and not off.startswith("OFF"):
            problems.append(f"{feature.label}: not off in '{feature.off}': {off}")
    return problems


def table(figures: dict[str, dict[str, float]]) -> str:
    full = figures["full"]
    header = ["feature"]
    for _, what in FIGURES:
        header += [f"{what}: with", "without", "difference", "share"]
    lines = [header]
    for feature in FEATURES:
        row = [feature.label]
        for key, _ in FIGURES:
            on, off = figures[feature.on][key], figures[feature.off][key]
            row += [f"{on:.3f}", f"{off:.3f}", f"{on - off:+.3f}", f"{(on - off) / full[key]:+.0%}"]
        lines.append(row)
    lines.append(["full config, CPU ms per request", f"{full['cpu_ms']:.3f}", "", "", "",
                  f"{full['stream_cpu_ms']:.3f}", "", "", ""])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        for line in lines
    )  # fmt: skip


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.costs", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition (~1-2 min)")
    parser.add_argument("--python-load", action="store_true", help="never use wrk")
    parser.add_argument("--keep", action="store_true", help="keep the work dir's logs")
    return parser.parse_args(argv)


async def run(quick: bool, python_load: bool, keep: bool) -> int:
    plan: Plan = QUICK if quick else FULL
    server_core, load_core = cores()
    os.sched_setaffinity(0, {load_core})
    workdir = Path(tempfile.mkdtemp(prefix="llmgw-costs-"))
    use_wrk = bool(wrk.available()) and not python_load
    bench = Bench(plan, workdir, server_core, load_core, use_wrk, targets.revision())
    upstream = targets.upstream(workdir, load_core)  # also the OTLP sink
    processes: dict[str, Process] = {}
    began = time.monotonic()
    try:
        await upstream.start()
        for variant in VARIANTS:
            if not variant.process_of:
                config = write_config(workdir, variant)
                name = f"llmgw {variant.name}"
                processes[variant.name] = targets.llmgw(
                    workdir, server_core, upstream.port, config, name
                )
        await asyncio.gather(*(p.start() for p in processes.values()))
        chosen = {
            v.name: Target(v.name, processes[v.process_of or v.name], model=v.model)
            for v in VARIANTS
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
        for name, target in chosen.items():
            _say(f"{name}: warm-up")
            await bench.closed(target, bodies.chat(stream=False, chunks=16), plan.conns, 1)
            await bench.closed(target, bodies.chat(stream=True, chunks=plan.chunks), plan.conns, 1)
        names = list(chosen)
        for rep in range(plan.reps):
            shift = rep * 3 % len(names)  # a rotated order: no variant always runs first
            for name in names[shift:] + names[:shift]:
                busiest = await wait_for_quiet(patience=3.0)
                if busiest > 0.1:
                    bench.notes.append(
                        f"machine busy ({busiest:.0%} of a core) at {name} {rep + 1}"
                    )
                _say(f"{name}: repetition {rep + 1}/{plan.reps}")
                runs[name].append(await measure(bench, chosen[name]))
        states = {
            name: await state(target, target.process.log, upstream.port)
            for name, target in chosen.items()
        }
    finally:
        for process in processes.values():
            process.stop()
        upstream.stop()
    figures = {
        name: {key: statistics.median(r[key] for r in reps) for key, _ in FIGURES}
        for name, reps in runs.items()
    }
    load = "wrk" if use_wrk else "python"
    print(f"llmgw feature costs ({'quick' if quick else 'full'}: {plan.reps} repetitions, medians;"
          f" load by {load}; {time.monotonic() - began:.0f} s)")  # fmt: skip
    print(f"llmgw measured: {bench.revision}")
    print("CPU ms per request of the llmgw process, 64 connections; share: of the full config's")
    print(table(figures))
    print("llmgw features (full): " + ", ".join(f"{k} {v}" for k, v in states["full"].items()))
    for problem in checks(states):
        print(f"CHECK FAILED: {problem}")
    for note in bench.notes:
        print(f"note: {note}")
    print("note: metrics cannot be turned off by config (llmgw always counts): not measured apart")
    if not keep:
        tidy(workdir)
    return 0


def tidy(workdir: Path) -> None:
    """Remove the run's copy of llmgw, configs, logs, load scripts and databases; keep
    anything else (profiles), and the work directory only while something is left."""
    shutil.rmtree(workdir / "src", ignore_errors=True)
    for path in sorted(workdir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        elif path.suffix in (".log", ".lua", ".yaml") or path.name.startswith("llmgw.db"):
            path.unlink()
            if not any(path.parent.iterdir()) and path.parent != workdir:
                path.parent.rmdir()
    if not any(workdir.iterdir()):
        workdir.rmdir()


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return uvloop.run(run(args.quick, args.python_load, args.keep))


if __name__ == "__main__":
    sys.exit(main())
