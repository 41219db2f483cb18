"""Command line: ``llmgw --config gateway.yaml [--host H] [--port P] [--check] [--version]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from llmgw import __version__
from llmgw.app import create_app, create_metrics_app
from llmgw.config import ConfigError, parse, read_text
from llmgw.observe import logs
from llmgw.server.lifecycle import MANAGE_LOGGING, serve
from llmgw.store.engine import StoreError

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
        text = read_text(args.config)
        config = parse(text, args.config)
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
    log.info("llmgw %s starting (config %s)", __version__, args.config)
    app = create_app(config, config_path=os.path.abspath(args.config), config_text=text)
    app[MANAGE_LOGGING] = True
    metrics_port = config.server.metrics_port
    metrics = None if metrics_port is None else (create_metrics_app(app), metrics_port)
    loop = _new_loop()
    try:
        loop.run_until_complete(
            serve(
                app,
                host,
                port,
                config.server.shutdown_timeout,
                metrics,
                config.server.max_connections,
            )
        )
    except StoreError as exc:  # the database cannot be opened or migrated
        log.error("%s", exc)
        return 1
    except OSError as exc:  # e.g. the port is taken
        log.error("cannot serve on %s:%s: %s", host, port, exc)
        return 1
    finally:
        loop.close()
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
