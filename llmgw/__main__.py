"""Command line: ``llmgw --config gateway.yaml [--host H] [--port P] [--check] [--version]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from aiohttp import web

from . import __version__, logs
from .app import create_app
from .config import ConfigError, load

log = logging.getLogger("llmgw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmgw", description="A fast, self-hosted LLM gateway.")
    parser.add_argument(
        "--config",
        default=os.environ.get("LLMGW_CONFIG") or "gateway.yaml",
        help="config file (default: $LLMGW_CONFIG, then ./gateway.yaml)",
    )
    parser.add_argument("--host", help="listen address (default: server.host)")
    parser.add_argument("--port", type=int, help="listen port (default: server.port)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument("--version", action="version", version=f"llmgw {__version__}")
    args = parser.parse_args(argv)

    try:
        config = load(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    if args.check:
        print("ok")
        return 0

    logs.configure(config.logging.level, config.logging.format)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    log.info("llmgw %s listening on %s:%s (config %s)", __version__, host, port, args.config)
    web.run_app(
        create_app(config, config_path=args.config),
        host=host,
        port=port,
        shutdown_timeout=config.server.shutdown_timeout,
        handler_cancellation=True,
        access_log=None,
        print=None,
        loop=_new_loop(),
    )
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed, else the standard loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    sys.exit(main())
