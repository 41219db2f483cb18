"""The command line (SPEC §1) and the README's first command on a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from llmgw import __version__
from tests.fakes import free_port

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmgw", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"llmgw {__version__}"


def test_check_ok(tmp_path: Path) -> None:
    result = run("--check", "--config", str(ROOT / "gateway.yaml"))
    assert (result.returncode, result.stdout.strip()) == (0, "ok")


def test_check_names_lines_of_unknown_key_and_bad_duration(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n  demo:\n    type: mock\n    chunk_dealy: 1s\n    timeout: soon\n"
    )
    result = run("--check", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}:4:5: providers.demo.chunk_dealy: unknown key 'chunk_dealy' "
        "(did you mean 'chunk_delay'?)",
        f"{config}:5:14: providers.demo.timeout: invalid duration 'soon' "
        "(use e.g. 250ms, 30s, 5m, 1h)",
    ]


def test_config_defaults_to_env_then_cwd(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text("providers: {demo: {type: mock}}\n")
    assert run("--check", cwd=tmp_path).stdout.strip() == "ok"
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    result = run("--check", cwd=tmp_path, env={"LLMGW_CONFIG": str(bad)})
    assert result.returncode == 1 and "bad.yaml:1:1: nope: unknown key" in result.stderr


def test_invalid_config_fails_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("providers: {demo: {type: mock, latency: never}}\n")
    result = run("--config", str(config), "--port", str(free_port()))
    assert result.returncode == 1
    assert "providers.demo.latency: invalid duration" in result.stderr


def readme_run_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- run-command -->\n```sh\n(.+)\n```", text)
    assert match, "README.md must start with the run command"
    return match.group(1)


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Iterator[Path]:
    """The committed tree, as a newcomer's `git clone` gets it (the working tree when
    there is no git history, as in a source tarball)."""
    target = tmp_path / "llmgw"
    if shutil.which("git") and (ROOT / ".git").exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True, timeout=60)
    else:
        shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    yield target


def test_readme_first_command_serves_chat_from_demo(fresh_clone: Path) -> None:
    """The README's first command, minus the install this environment already did,
    run in a fresh clone with no API keys: the shipped config answers through demo."""
    install, _, start = readme_run_command().partition(" && ")
    assert install.startswith("pip install")
    assert start.startswith("llmgw ")
    port = free_port()
    argv = [sys.executable, "-m", "llmgw", *start.split()[1:], "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    process = subprocess.Popen(
        argv, cwd=fresh_clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        for model in ("auto", "fast", "cheap", "echo"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                data=orjson.dumps(
                    {"model": model, "messages": [{"role": "user", "content": "hello llmgw"}]}
                ),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                body = orjson.loads(response.read())
                assert response.headers["X-LLMGW-Provider"] == "demo"
            assert body["choices"][0]["message"]["content"] == "hello llmgw"
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
