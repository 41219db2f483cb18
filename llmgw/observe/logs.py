"""Logging, configured once at the entry point: JSON lines for machines, text for people."""

from __future__ import annotations

import contextlib
import logging
import logging.config
import threading
import time
from typing import Any, TextIO

from aiohttp.http_exceptions import HttpProcessingError
from pythonjsonlogger.orjson import OrjsonFormatter

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...`` with the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and value is not None
        )
        return f"{line} {extras}" if extras else line


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback that quotes the offending
    bytes, an ``Authorization`` header among them. One line naming the error is enough:
    the request never reached the gateway."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed HTTP request from %s: %s"
            record.args = (peer, type(error).__name__)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_USUAL = (("asctime", "time"), ("levelname", "level"), ("name", "logger"), ("message", "message"))


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter, leaner where every access line pays: the
    timestamp text is made once a second, and the record's extra fields are copied in
    one pass (the library's general path renames and checks each of them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamp = (-1, "")  # (second, its text): one attribute, so threads agree
        self._named = tuple((field, self._get_rename(field)) for field in self._required_fields)
        self._usual = self._named == _USUAL  # as json_formatter() makes it
        # Lines can be made without a record when nothing but these fields is asked for.
        self.direct = not (self.defaults or self.static_fields or self.timestamp) and set(
            self._required_fields
        ) <= {"asctime", "levelname", "name", "message"}

    def line(self, level: int, logger: str, message: str, fields: dict[str, Any]) -> str:
        """What ``format`` makes of a record of ``message`` with ``fields`` as extras,
        made now, without the record (for ``AccessLog``)."""
        created = time.time()
        stamp = self._stamp_of(created, int((created - int(created)) * 1000))
        if self._usual:  # one dict, made in one go
            data = {
                "time": stamp,
                "level": logging.getLevelName(level),
                "logger": logger,
                "message": message,
                **fields,
            }
        else:
            record = {
                "asctime": stamp,
                "levelname": logging.getLevelName(level),
                "name": logger,
                "message": message,
            }
            data = {name: record[field] for field, name in self._named}
            data.update(fields)
        return self.jsonify_log_record(data)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        return self._stamp_of(record.created, int(record.msecs))

    def _stamp_of(self, created: float, msecs: int) -> str:
        second, text = self._stamp
        if second != int(created):
            second = int(created)
            text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._stamp = (second, text)
        return f"{text},{msecs:03d}"

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        if self.defaults or self.static_fields or self.timestamp:
            super().add_fields(log_data, record, message_dict)
            return
        data = record.__dict__
        for field, name in self._named:
            log_data[name] = data.get(field)
        for key, value in message_dict.items():
            log_data[self._get_rename(key)] = value
        skip = self._skip_fields
        for key, value in data.items():
            if key not in skip and not key.startswith("_"):
                log_data[key] = value


FLUSH_INTERVAL = 0.5  # seconds an info line may wait in the buffer


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes lines in batches instead of one system call per line: at the latest every
    ``FLUSH_INTERVAL`` seconds, at once for warnings and above, and at exit."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._stopped = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_regularly, name="llmgw-log-flush", daemon=True
        )
        self._flusher.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """As ``Handler.handle``, with the lock held only around the list (``queue``),
        not around formatting."""
        kept = self.filter(record)
        if isinstance(kept, logging.LogRecord):  # 3.12+: a filter may give a new record
            record = kept
        if kept:
            self.emit(record)
        return bool(kept)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.queue(line, record.levelno)

    def queue(self, line: str, level: int) -> None:
        """Add a formatted line; written within ``FLUSH_INTERVAL``, or now for warnings."""
        with self.lock or contextlib.nullcontext():  # the flusher swaps the list out
            self._pending.append(line + self.terminator)
            full = len(self._pending) >= 512
        if level >= logging.WARNING or full:
            self.flush()

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                try:
                    self.stream.write(text)
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # stderr closed under us: nothing else to tell it to

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _flush_regularly(self) -> None:
        while not self._stopped.wait(FLUSH_INTERVAL):
            self.flush()


class AccessLog:
    """The one access line per request, on the ``llmgw.access`` logger.

    It is a log record like any other, except when the only place it can go is
    llmgw's own buffered JSON handler (as ``configure`` sets things up): then the line
    is made directly (one dict, one orjson call) and queued there. The record, filter
    and formatter layers otherwise cost about as much as the rest of a cache hit. Both
    ways give the same line (tested)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def log(self, level: int, fields: dict[str, Any]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        handler = _sole_json_handler(logger, level)
        if handler is None:
            logger.log(level, "request", extra=fields)
            return
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
        try:
            line = formatter.line(level, logger.name, "request", fields)
        except Exception:  # a field orjson cannot write: logging reports it, never raises
            logger.log(level, "request", extra=fields)
            return
        handler.queue(line, level)


def _sole_json_handler(logger: logging.Logger, level: int) -> BufferedStreamHandler | None:
    """The handler a record of ``logger`` at ``level`` would reach, if it is the only one,
    is llmgw's buffered handler with a direct-capable JSON formatter, and no filter on
    the way could change or drop the record."""
    found: BufferedStreamHandler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters:
            return None
        for handler in node.handlers:
            if found is not None or type(handler) is not BufferedStreamHandler:
                return None
            found = handler
        if not node.propagate:
            break
        node = node.parent
    if found is None or level < found.level:
        return None
    if any(type(f) is not MalformedRequests for f in found.filters):
        return None  # (MalformedRequests changes records with a traceback only)
    formatter = found.formatter
    return found if isinstance(formatter, JsonFormatter) and formatter.direct else None


def json_formatter() -> JsonFormatter:
    """llmgw's JSON lines: time, level, logger, message, then the record's fields."""
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def configure(level: str = "info", fmt: str = "json") -> None:
    # What the logging HOWTO suggests when these are not wanted: no caller lookup (a
    # walk up the stack per record), no thread or process names on records.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    formatter: dict[str, Any]
    if fmt == "json":
        formatter = {"()": json_formatter}
    else:
        formatter = {
            "()": TextFormatter,
            "fmt": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": formatter},
            "filters": {"malformed_requests": {"()": MalformedRequests}},
            "handlers": {
                "stderr": {
                    "class": "llmgw.observe.logs.BufferedStreamHandler",
                    "formatter": "default",
                    "filters": ["malformed_requests"],
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"level": level.upper(), "handlers": ["stderr"]},
            # watchfiles reports every change in the config's folder at debug: a log file
            # kept there would feed it for ever.
            "loggers": {"aiohttp.access": {"level": "WARNING"}, "watchfiles": {"level": "WARNING"}},
        }
    )
