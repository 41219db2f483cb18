"""What the gateway reports: JSON logs and access lines (``logs``), Prometheus metrics
(``metrics``), per-request accounting batched per loop turn (``accounting``), usage
and cost (``usage``), the dashboard's live rings (``live``), latency samples
(``reservoir``) and OpenTelemetry tracing (``tracing``, ``tracing_export``)."""
