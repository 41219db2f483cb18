"""The processes under test: started pinned to a core, read from /proc, stopped.

CPU time is the process's time on CPU (user + system, every thread): the sum of
``/proc/PID/task/*/schedstat`` (nanoseconds), else ``utime + stime`` from
``/proc/PID/stat`` (clock ticks, 10 ms: too coarse for short runs). Peak RSS is ``VmHWM`` from ``/proc/PID/status``, reset through ``clear_refs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import client

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cores() -> tuple[int, int]:
    """(server core, load generator + upstream core); the same core on a 1-CPU box."""
    available = sorted(os.sched_getaffinity(0))
    return available[0], available[-1]


@dataclass
class Process:
    """A server process: its command, port, core and log file."""

    name: str
    argv: list[str]
    port: int
    core: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    health: str = "/health"
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    async def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pin(self.core)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log}")
            try:
                if (await client.get(HOST, self.port, self.health)).status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.health} in {timeout}s")

    def pin(self, core: int) -> None:
        """Move every thread of the process to ``core``."""
        self.core = core
        for task in os.listdir(f"/proc/{self.pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(task), {core})

    def cpu_seconds(self) -> float:
        try:
            return (
                sum(
                    int(Path(f"/proc/{self.pid}/task/{task}/schedstat").read_text().split()[0])
                    for task in os.listdir(f"/proc/{self.pid}/task")
                )
                / 1e9
            )
        except (OSError, ValueError, IndexError):
            return self._stat_cpu_seconds()

    def _stat_cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def peak_rss_mib(self) -> float:
        return self._status_kib("VmHWM") / 1024

    def rss_mib(self) -> float:
        return self._status_kib("VmRSS") / 1024

    def reset_peak_rss(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def _status_kib(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        return 0

    async def settle(self, idle: float = 0.05, patience: float = 60.0) -> float:
        """Wait, at most ``patience`` seconds, until the process uses less than ``idle``
        of a core over half a second (work left behind by a load run: requests its
        clients no longer wait for). Returns how long it took."""
        began = time.monotonic()
        while time.monotonic() - began < patience:
            before = self.cpu_seconds()
            await asyncio.sleep(0.5)
            if self.cpu_seconds() - before < idle * 0.5:
                break
        return time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: only this process, by its pid."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) clock ticks since boot, from /proc/stat."""
    times: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        busy = user + nice + system + irq + softirq + steal
        times[int(name[3:])] = (busy, busy + idle + iowait)
    return times


def busy_share(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], core: int
) -> float:
    busy = after[core][0] - before[core][0]
    total = after[core][1] - before[core][1]
    return busy / total if total else 0.0


async def wait_for_quiet(limit: float = 0.1, window: float = 0.5, patience: float = 10.0) -> float:
    """Wait, at most ``patience`` seconds, until no core is more than ``limit`` busy over
    ``window`` (while nothing of ours runs, that is someone else's work). Returns the
    busiest core's share over the last window."""
    deadline = time.monotonic() + patience
    while True:
        before = core_times()
        await asyncio.sleep(window)
        after = core_times()
        busiest = max(busy_share(before, after, core) for core in after)
        if busiest <= limit or time.monotonic() >= deadline:
            return busiest
