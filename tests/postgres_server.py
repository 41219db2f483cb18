"""A throwaway PostgreSQL cluster for the database tests: ``initdb`` and ``pg_ctl``
(Debian's ``postgresql`` package) on a free 127.0.0.1 port, under a fresh folder,
stopped with ``pg_ctl stop`` (its own PID file). PostgreSQL refuses to run as root:
as root, the cluster is made and run as the ``postgres`` OS user (``runuser``)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import free_port


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yields ``postgresql://llmgw@127.0.0.1:<port>/llmgw``; skips when PostgreSQL is
    not installed."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); CI installs it")
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        prefix = [runuser, "-u", "postgres", "--"]
    # Not under pytest's tmp folder: that one is private to root.
    folder = Path(tempfile.mkdtemp(prefix="llmgw-pg-"))
    data = folder / "data"
    if prefix:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "llmgw", "--auth=trust", "-E", "UTF8"],
            check=True, timeout=120, **quiet,
        )  # fmt: skip
        options = f"-p {port} -k {folder} -h 127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w",
             "-t", "60", "start"],
            check=True, timeout=90, **quiet,
        )  # fmt: skip
        try:
            subprocess.run(
                [*prefix, _binary("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port),
                 "-U", "llmgw", "llmgw"],
                check=True, timeout=60, **quiet,
            )  # fmt: skip
            yield f"postgresql://llmgw@127.0.0.1:{port}/llmgw"
        finally:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                timeout=60, **quiet,
            )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
