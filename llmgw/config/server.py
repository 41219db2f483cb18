"""The ``server`` and ``logging`` sections of gateway.yaml: listeners, bounds on
bodies, connections and writes, and how the gateway logs."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from llmgw.config.fields import Duration, Frozen, Names, Size, empty_to_none


class ServerConfig(Frozen):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    max_body_size: Size = 20 * 1024**2
    # One multipart upload (audio transcriptions), spooled to a temporary file.
    max_upload_size: Size = 25 * 1024**2
    # Bytes held by request bodies still arriving, all together (0 = unbounded; never
    # less than max_body_size, so that one body of the largest size can always arrive).
    max_pending_body_bytes: Size = 128 * 1024**2
    # Open client connections (0 = unbounded); a change needs a restart.
    max_connections: int = Field(10_000, ge=0)
    shutdown_timeout: Duration = 30.0
    # the longest a write to a client may make no progress before its response is ended
    write_timeout: Duration = 60.0
    cors_origins: Names = ()
    # A second listener, on the same host, that serves /metrics only (and the main
    # port then answers 404 there). Unset: /metrics is on the main port, admin only.
    metrics_port: Annotated[int | None, BeforeValidator(empty_to_none)] = Field(
        None, ge=1, le=65535
    )
    # Peers (CIDRs) whose X-Forwarded-For names the client's address (limits.per_ip).
    trusted_proxies: Names = ()
    # Networks (CIDRs) the gateway may fetch chat image URLs from although they are not
    # public (an internal image host); loopback, private and metadata are refused else.
    image_fetch_allow: Names = ()

    @field_validator("trusted_proxies", "image_fetch_allow")
    @classmethod
    def _networks(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR range") from None
        return values

    @model_validator(mode="after")
    def _two_ports(self) -> ServerConfig:
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError("metrics_port must differ from port")
        return self

    @field_validator("write_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class LoggingConfig(Frozen):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    log_prompts: bool = False
