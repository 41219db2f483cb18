"""Where llmgw spends its CPU under load: py-spy samples the running process (raw
collapsed stacks), and the samples are summed per function and per library.

    python -m tests.benchmarks --profile

"Self" is the share of samples whose innermost frame is the function; "total" the
share of samples with the function anywhere on the stack. Samples of other threads
(the config watcher's, the executor's) are left out: py-spy counts their native
waits as work, while /proc shows they use well under 1% of a core. Self time of
``llmgw/__main__.py:main`` is the native event loop (uvloop, socket syscalls).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
_AREAS = (
    ("llmgw/", "llmgw"),
    ("pythonjsonlogger", "logging (json)"),
    ("logging/", "logging"),
    ("prometheus_client", "prometheus_client"),
    ("aiohttp/", "aiohttp"),
    ("multidict", "aiohttp"),
    ("yarl", "aiohttp"),
    ("asyncio/", "asyncio"),
    ("uvloop", "asyncio"),
    ("pydantic", "pydantic"),
    ("orjson", "orjson"),
)


def available() -> str | None:
    return shutil.which("py-spy")


async def record(
    pid: int, seconds: float, output: Path, load: Awaitable[int]
) -> tuple[str | None, int]:
    """Sample ``pid`` while ``load`` runs: (an error message or None, what ``load`` returned)."""
    command = ["py-spy", "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate", "100"]
    # Blocking (the default) pauses the process for each sample: the stacks are exact,
    # at 100 Hz the process loses a few percent; --nonblocking tears stacks.
    command += ["--format", "raw", "--nolineno", "--output", str(output)]
    spy = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    count = await load
    async with asyncio.timeout(seconds + 30):
        text, _ = await spy.communicate()
    if spy.returncode != 0 or not output.exists():
        return f"py-spy failed ({spy.returncode}): {text.decode(errors='replace')[-500:]}", count
    return None, count


def _area(file: str) -> str:
    for needle, area in _AREAS:
        if needle in file:
            return area
    return "other" if "/" in file or file.endswith(".py") else "native/builtin"


def summarise(raw: Path, cpu_ms: float, top: int = 25) -> str:
    """The samples summed up; ``cpu_ms`` (CPU per request) turns shares into µs/request."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    llmgw_total: Counter[str] = Counter()
    samples = 0
    threads = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if "_bootstrap (threading.py)" in frames[0]:
            threads += count  # idle waits py-spy takes for work (their /proc CPU is ~0)
            continue
        samples += count
        own[frames[-1]] += count
        match = _FRAME.match(frames[-1])
        file = match["file"] if match else frames[-1]
        areas["event loop (native)" if file.endswith("__main__.py") else _area(file)] += count
        for frame in set(frames):
            total[frame] += count
            if "llmgw/" in frame and "__main__.py" not in frame:
                llmgw_total[frame] += count
    if not samples:
        return "no samples"

    def share(n: int) -> str:
        return f"{100 * n / samples:5.1f}% {1000 * cpu_ms * n / samples:6.1f} us"

    out = [f"{samples} samples of the event loop's thread ({threads} of idle threads left out)"]
    out.append("self time by library:")
    out += [f"  {share(n)}  {area}" for area, n in areas.most_common()]
    out.append(f"top {top} functions by self time:")
    out += [f"  {share(n)}  {frame}" for frame, n in own.most_common(top)]
    out.append(f"llmgw functions by total time (top {top}):")
    out += [f"  {share(n)}  {frame}" for frame, n in llmgw_total.most_common(top)]
    return "\n".join(out)
