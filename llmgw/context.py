"""What one request did, filled in as it travels; read by the access log and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float  # perf_counter at ingress
    surface: str = "openai"  # error dialect: "openai" or "anthropic"
    endpoint: str | None = None  # set for client API calls only
    key: str | None = None  # the client key's name, never the key
    model: str | None = None
    model_label: str = "other"
    provider: str | None = None
    upstream_model: str | None = None
    dropped: tuple[str, ...] = ()  # request parameters the provider's translation left out
    status: int = 0
    cache: str | None = None
    attempts: int = 0
    first_byte: float | None = None  # perf_counter when the first body byte went out
    upstream_wait: float = 0.0  # seconds spent waiting on providers
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    delivered: bool = False  # the client had its whole answer (a stream: its end event)
    prompt: str | None = None  # only when logging.log_prompts is on
    streamed_events: int = 0  # SSE events relayed (estimates tokens when usage never came)
    ratelimit: dict[str, str] | None = None  # x-ratelimit-* headers, written by add_headers

    def log_fields(self, latency: float) -> dict[str, Any]:
        ttfb = (
            None if self.first_byte is None else round((self.first_byte - self.started) * 1000, 2)
        )
        return {
            "request_id": self.request_id,
            "key": self.key,
            "endpoint": self.endpoint,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.status,
            "cache": self.cache,
            "attempts": self.attempts,
            "latency_ms": round(latency * 1000, 2),
            "ttfb_ms": ttfb,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "error": self.error,
        }
