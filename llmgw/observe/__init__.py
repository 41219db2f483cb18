"""What the gateway reports: JSON logs and access lines (``logs``), Prometheus metrics
(``metrics``), per-request accounting batched per loop turn (``accounting``) and usage
and cost (``usage``)."""
