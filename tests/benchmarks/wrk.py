"""wrk (the Debian package) as the closed-loop load generator, when it is installed.

Each request's body comes from a Lua ``request()`` built around a counter, so that
no two requests are alike (a gateway's cache sees only misses) unless the body is
meant to repeat (cache hits).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
local head = [==[{head}]==]
local tail = [==[{tail}]==]
local counter = 0
request = function()
  counter = counter + 1
  local body = {body}
  return wrk.format(nil, "{path}", nil, body)
end
"""


@dataclass(frozen=True)
class WrkRun:
    requests: int
    seconds: float
    rps: float
    p50: float | None  # seconds
    p99: float | None
    errors: int  # non-2xx answers and socket errors


def available() -> str | None:
    return shutil.which("wrk")


def write_script(path: Path, body: bytes, url_path: str, api_key: str, unique: bool) -> Path:
    """A Lua script sending ``body``; with ``unique`` its ``@N@`` is the request number."""
    text = body.decode()
    head, _, tail = text.partition("@N@") if unique else (text, "", "")
    lua = _LUA.format(
        key=api_key,
        head=head,
        tail=tail,
        path=url_path,
        body="head .. counter .. tail" if unique else "head",
    )
    path.write_text(lua)
    return path


async def run(url: str, script: Path, connections: int, seconds: float, core: int | None) -> WrkRun:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    command.append(url)
    if core is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(seconds + 30):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return parse(output.decode(errors="replace"))


def parse(output: str) -> WrkRun:
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    requests = int(done.group(1))
    seconds = float(done.group(2)) * _UNITS[done.group(3)]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(g) for g in match.groups())
    return WrkRun(
        requests,
        seconds,
        requests / seconds,
        _percentile(output, 50),
        _percentile(output, 99),
        errors,
    )


def _percentile(output: str, pct: int) -> float | None:
    match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None
