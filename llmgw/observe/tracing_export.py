"""The OpenTelemetry SDK side of tracing: a tracer provider per telemetry settings and
an exporter thread behind a bounded queue. Imported only when tracing is on.

The SDK's own batch processor drops spans silently when its queue is full; this one
counts them (and the spans of an export that failed), so ``/metrics`` tells how much
of the picture is missing. A request only ever puts a finished span on the queue: an
unreachable or slow collector costs the exporter thread its time, never a request.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from llmgw.config.schema import TelemetryConfig

log = logging.getLogger(__name__)

MAX_BATCH = 512
_STOP = object()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a bare collector address gets ``/v1/traces``."""
    return endpoint if urlsplit(endpoint).path not in ("", "/") else f"{endpoint}/v1/traces"


class Pipeline:
    """A tracer whose finished spans go to the collector of ``settings``."""

    def __init__(self, settings: TelemetryConfig, on_drop: Callable[[int], None]) -> None:
        assert settings.otlp_endpoint is not None
        exporter = OTLPSpanExporter(
            endpoint=traces_url(settings.otlp_endpoint), timeout=settings.export_timeout
        )
        self.processor = QueueProcessor(exporter, settings.max_queue_size, on_drop)
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            resource=Resource.create({SERVICE_NAME: settings.service_name}),
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(self.processor)
        self.tracer: Any = self.provider.get_tracer("llmgw")

    def close(self, *, wait: bool) -> None:
        self.processor.stop(wait=wait)


class QueueProcessor(SpanProcessor):
    """Finished, sampled spans onto a bounded queue; a daemon thread exports them in
    batches of what has gathered while it was busy."""

    def __init__(
        self, exporter: SpanExporter, max_queue: int, on_drop: Callable[[int], None]
    ) -> None:
        self._exporter = exporter
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._on_drop = on_drop
        self._stopped = False
        self.exported = 0
        self._thread = threading.Thread(target=self._run, name="llmgw-otlp", daemon=True)
        self._thread.start()

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled or self._stopped:
            return
        try:
            self._queue.put_nowait(span)
        except queue.Full:
            self._on_drop(1)

    def stop(self, *, wait: bool) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._queue.put(_STOP, timeout=1.0)
        except queue.Full:  # the thread is stuck on the collector: leave it to die with us
            return
        if wait:
            self._thread.join(timeout=10.0)

    def shutdown(self) -> None:
        self.stop(wait=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._queue.empty()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[ReadableSpan] = []
            stop = item is _STOP
            if not stop:
                batch.append(item)  # type: ignore[arg-type]
            while not stop and len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                else:
                    batch.append(more)  # type: ignore[arg-type]
            if batch:
                self._export(batch)
            if stop:
                self._exporter.shutdown()
                return

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            result = self._exporter.export(batch)
        except Exception:  # the exporter's own failure must not end the thread
            log.exception("exporting %d spans failed", len(batch))
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
        else:
            log.warning("the trace collector did not take %d spans; dropped", len(batch))
            self._on_drop(len(batch))
