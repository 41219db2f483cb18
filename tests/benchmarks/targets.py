"""What is measured: the upstream alone, the bare proxy, llmgw and (if installed)
LiteLLM, each a ``Target`` the load is sent to, with the ``Process`` whose CPU counts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .procs import HOST, Process, free_port

CLIENT_KEY = "sk-bench-client-0001"
MODEL = "bench-model"  # the plain model: one provider model, no routing decision
AUTO = "auto"  # smart routing over llmgw.yaml's routing.candidates: what llmgw is sent
HERE = Path(__file__).parent
REPO = HERE.parent.parent
LITELLM_ENV = "LLMGW_BENCH_LITELLM"  # path of the litellm executable in its own venv
_LITELLM_GUESSES = ("/opt/litellm/bin/litellm", "/opt/litellm-venv/bin/litellm")


@dataclass
class Target:
    name: str
    process: Process
    key: str = CLIENT_KEY
    path: str = "/v1/chat/completions"
    model: str = MODEL  # the "model" every request body names

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def upstream(workdir: Path, core: int) -> Process:
    port = free_port()
    argv = _python("tests.benchmarks.upstream", "--port", str(port))
    return Process("upstream", argv, port, core, workdir / "upstream.log")


def bare_proxy(workdir: Path, core: int, upstream_port: int) -> Process:
    port = free_port()
    argv = _python(
        "tests.benchmarks.bareproxy",
        "--port",
        str(port),
        "--upstream",
        f"http://{HOST}:{upstream_port}",
    )
    return Process("bare proxy", argv, port, core, workdir / "bareproxy.log")


def llmgw(
    workdir: Path, core: int, upstream_port: int, config: Path | None = None, name: str = "llmgw"
) -> Process:
    """llmgw from a copy of the package taken now: every llmgw process of a run
    (restarts included) runs the same code, even while the work tree changes.
    ``config`` is a file in ``workdir`` (default: ``llmgw.yaml`` copied there), so
    that the usage ledger's SQLite file is written beside it, in the work directory."""
    port = free_port()
    source = workdir / "src"
    if not source.exists():
        shutil.copytree(
            REPO / "llmgw", source / "llmgw", ignore=shutil.ignore_patterns("__pycache__")
        )
    if config is None:
        config = workdir / "llmgw.yaml"
        shutil.copyfile(HERE / "llmgw.yaml", config)
    argv = _python("llmgw", "--config", str(config), "--host", HOST, "--port", str(port))
    env = {
        "BENCH_UPSTREAM_URL": f"http://{HOST}:{upstream_port}",
        "BENCH_CLIENT_KEY": CLIENT_KEY,
        "PYTHONPATH": str(source),
    }
    log = workdir / f"{name.replace(' ', '-')}.log"
    return Process(name, argv, port, core, log, env=env, cwd=source)


def revision() -> str:
    """The commit and how many files of llmgw/ differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return done.stdout.strip()

    if shutil.which("git") is None:
        return "unknown revision"
    changed = len(git("status", "--porcelain", "--", "llmgw").splitlines())
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'} + {changed} changed files in llmgw/"


def find_litellm(given: str | None) -> str | None:
    for candidate in (given, os.environ.get(LITELLM_ENV), *_LITELLM_GUESSES):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def litellm(workdir: Path, core: int, upstream_port: int, executable: str) -> Process:
    """LiteLLM's proxy, one worker, a master key and the same single model."""
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        f"    litellm_params: {{model: openai/{MODEL}, api_base: 'http://{HOST}:{upstream_port}/v1',"
        " api_key: sk-bench-upstream}\n"
        f"general_settings: {{master_key: {CLIENT_KEY}}}\n"
    )
    argv = [executable, "--config", str(config), "--host", HOST, "--port", str(port)]
    argv += ["--num_workers", "1"]
    return Process(
        "litellm", argv, port, core, workdir / "litellm.log", health="/health/liveliness"
    )
