"""The current config snapshot, and how a new one replaces it (SPEC §6).

``ConfigStore.current`` is one reference to an immutable ``Runtime``. A reload
reads and validates the whole file, builds a whole new runtime and swaps the
reference, so every request sees exactly one config from ingress to its last byte.
An invalid file changes nothing: the last good config keeps serving and the error
is reported (log, ``/api/v1/config``, ``llmgw_config_reloads_total{result="error"}``).
A SIGHUP or reload call that finds the text unchanged is reported too
(``result="unchanged"``), so a ``systemctl reload`` is never silent; the watcher's
wake-ups for other files in the folder are not.

The watcher is small and separate from what it reloads: it watches the directory
holding the file (editors save by renaming over it; a Kubernetes ConfigMap swaps a
``..data`` symlink) and calls ``reload`` when the file's text changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import watchfiles

from llmgw.config import ConfigError, GatewayConfig, parse, read_text
from llmgw.runtime import Runtime

log = logging.getLogger(__name__)

WATCH_DEBOUNCE_MS = 100  # editors write in bursts; 100 ms keeps a reload well under 2 s
WATCH_STEP_MS = 100


@dataclass(frozen=True, slots=True)
class ReloadResult:
    result: str  # "success", "unchanged" or "error"
    at: float  # unix time
    errors: tuple[str, ...] = ()
    trigger: str = "startup"

    def as_json(self) -> dict[str, object]:
        return {
            "result": self.result,
            "at": self.at,
            "trigger": self.trigger,
            "errors": list(self.errors),
        }


class ConfigStore:
    """The running snapshot and the outcome of the last load."""

    def __init__(self, runtime: Runtime, path: str | None = None, text: str | None = None) -> None:
        self.current = runtime
        self.path = path
        self.stopping = False  # set when shutdown begins: /ready turns 503
        self.last = ReloadResult("success", time.time())
        self._text = text
        self._lock = asyncio.Lock()

    def swap(self, runtime: Runtime) -> Runtime:
        previous, self.current = self.current, runtime
        return previous

    async def reload(self, build: Callable[[GatewayConfig], Runtime], trigger: str) -> ReloadResult:
        """Read, validate and swap in the config file; never raises for a bad file."""
        if self.path is None:
            return self._record(ReloadResult("error", time.time(), ("no config file",), trigger))
        async with self._lock:  # one reload at a time; later ones see the newest text
            try:
                text = await asyncio.to_thread(read_text, self.path)
                # Parsing costs milliseconds (TLS files are loaded to check them): an
                # unchanged text is known as such before it is parsed again.
                config = None if text == self._text else parse(text, self.path)
            except ConfigError as exc:
                return self._record(ReloadResult("error", time.time(), tuple(exc.errors), trigger))
            if config is None:
                unchanged = ReloadResult("unchanged", time.time(), (), trigger)
                if trigger == "file":  # the watcher sees every change in the folder
                    return unchanged
                log.info("config reload (%s): unchanged, still %s", trigger, self.current.digest)
                return self._record(unchanged)
            previous = self.swap(build(config))
            self._text = text
            _note_restart_needed(previous.config, config)
            log.info(
                "config reloaded (%s): %s -> %s", trigger, previous.digest, self.current.digest
            )
            return self._record(ReloadResult("success", time.time(), (), trigger))

    def _record(self, result: ReloadResult) -> ReloadResult:
        self.last = result
        if result.result == "error":
            for line in result.errors:
                log.error("config reload failed, still serving %s: %s", self.current.digest, line)
        return result


def _note_restart_needed(old: GatewayConfig, new: GatewayConfig) -> None:
    if (old.server.host, old.server.port, old.server.metrics_port) != (
        new.server.host,
        new.server.port,
        new.server.metrics_port,
    ):
        log.warning(
            "server.host/port/metrics_port changed to %s:%s (metrics %s): this needs a "
            "restart to take effect",
            new.server.host,
            new.server.port,
            new.server.metrics_port,
        )


async def watch(path: str, on_change: Callable[[], object], stop: asyncio.Event) -> None:
    """Call ``on_change`` whenever the file, or a ConfigMap's ``..`` entry, changes.

    Watching the directory, not the file, is what survives atomic rename-over saves
    and ConfigMap ``..data`` symlink swaps; the store ignores changes that leave the
    text as it was. Other files in the folder (a SQLite ledger and its journal next
    to the config) are filtered out here, so their writes never wake a reload. A
    watch that breaks (its folder vanished) is started again.
    """
    while not stop.is_set():
        folders = await asyncio.to_thread(_folders, path)
        try:
            async for _ in watchfiles.awatch(
                *folders,
                watch_filter=_ConfigChanges(path),
                stop_event=stop,
                debounce=WATCH_DEBOUNCE_MS,
                # The watcher's thread takes the GIL once a step to look for changes:
                # 100 ms (10 a second, not 50) still reloads well within a second.
                step=WATCH_STEP_MS,
                recursive=False,
            ):
                result = on_change()
                if asyncio.iscoroutine(result):
                    await result
        except (OSError, RuntimeError) as exc:
            log.warning("config watch interrupted (%s); watching again", exc)
            await asyncio.sleep(1)


class _ConfigChanges:
    """A watchfiles filter passing changes to the config file (by its own name or its
    symlink target's) and to ConfigMap entries (``..data``, ``..2026_12_01...``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, change: watchfiles.Change, changed: str) -> bool:
        name = os.path.basename(changed)
        if name.startswith("..") or name == os.path.basename(self.path):
            return True
        return name == os.path.basename(os.path.realpath(self.path))


def _folders(path: str) -> list[str]:
    """The file's folder, and its symlink target's folder when that lies elsewhere
    (a ConfigMap's timestamped folder lies inside the first and is replaced whole)."""
    here = os.path.dirname(os.path.abspath(path))
    there = os.path.dirname(os.path.realpath(path))
    inside = os.path.commonpath([here, there]) == here
    return [here] if inside or not os.path.isdir(there) else [here, there]
