"""The one error tree of the gateway (SPEC §3).

    GatewayError                      status  type                   code
    ├── InvalidRequest                400     invalid_request_error  invalid_request
    │   ├── RequestTimedOut           408     invalid_request_error  request_timeout
    │   └── UnsupportedEndpoint       400     invalid_request_error  unsupported_endpoint
    ├── RequestTooLarge               413     invalid_request_error  request_too_large
    ├── UnsupportedEncoding           415     invalid_request_error  unsupported_content_encoding
    ├── AuthenticationFailed          401     authentication_error   invalid_api_key
    ├── Forbidden                     403     permission_error       permission_denied
    │   └── ModelNotAllowed           403     permission_error       model_not_allowed
    ├── NotFound                      404     not_found_error        not_found
    │   └── ModelNotFound             404     not_found_error        model_not_found
    ├── Conflict                      409     invalid_request_error  conflict
    ├── RateLimited                   429     rate_limit_error       rate_limit_exceeded
    ├── BudgetExceeded                429     insufficient_quota     budget_exceeded
    ├── InternalError                 500     api_error              internal_error
    ├── UpstreamFailed                502     api_error              upstream_error
    ├── NoProviderAvailable           503     api_error              no_provider_available
    ├── Overloaded                    503     api_error              overloaded
    └── UpstreamTimedOut              504     api_error              upstream_timeout

Each error knows how it looks on the wire in both client dialects (OpenAI's and
Anthropic's) and carries only text the gateway wrote itself: never a provider's
message, a key or a traceback. Every error body the gateway writes, in either
dialect and for whoever writes it (these errors, the translators, a stream that
fails midway), is rendered here: ``openai_error``, ``anthropic_error`` and
``stream_error_event``. ``Attempt failures`` (one upstream try going wrong)
are not client errors; they live in ``upstream.py`` and become one of these only
when every target has failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar, Literal

import orjson

from llmgw.sse import encode

Dialect = Literal["openai", "anthropic"]

# OpenAI's error ``type`` for a status (other 4xx: invalid_request_error; 5xx: api_error).
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
# Anthropic's error `type` for each of our statuses (their docs' error list).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    408: "timeout_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.details = details  # more for the client, inside ``error`` (OpenAI dialect)

    def openai_body(self) -> bytes:
        return openai_error(self.message, self.type, self.code, self.param, self.details)

    def anthropic_body(self) -> bytes:
        return anthropic_error(anthropic_error_type(self.status), self.message)


def openai_error(
    message: str,
    type: str,
    code: str | None = None,
    param: str | None = None,
    details: Mapping[str, object] | None = None,
) -> bytes:
    """An error body in OpenAI's dialect (what the openai SDK parses into its errors);
    ``details`` (e.g. the models available) go inside ``error``."""
    error: dict[str, object] = {"message": message, "type": type, "param": param, "code": code}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


def anthropic_error(type: str, message: str) -> bytes:
    """An error body in Anthropic's dialect (what the anthropic SDK parses)."""
    return orjson.dumps({"type": "error", "error": {"type": type, "message": message}})


def openai_error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    return _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    return _ANTHROPIC_TYPES.get(status, "api_error")


def stream_error_event(message: str, dialect: Dialect | str = "openai") -> bytes:
    """The SSE event that ends a stream failing after its first byte, in the client's
    dialect (what the OpenAI and Anthropic SDKs raise on)."""
    if dialect == "anthropic":
        return encode(anthropic_error("api_error", message), event="error")
    return encode(openai_error(message, "api_error", "upstream_error"))


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class UnsupportedEndpoint(InvalidRequest):
    """No target of the model serves the endpoint asked (SPEC §12)."""

    code = "unsupported_endpoint"


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedEncoding(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_content_encoding"


class RequestTimedOut(InvalidRequest):
    status = 408
    code = "request_timeout"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    """A monthly budget is spent: retrying will not help before the period ends."""

    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"x-should-retry": "false"})


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class InternalError(GatewayError):
    status = 500


class UpstreamFailed(GatewayError):
    status = 502
    code = "upstream_error"


class NoProviderAvailable(GatewayError):
    status = 503
    code = "no_provider_available"


class Overloaded(GatewayError):
    """The gateway itself is at a bound it keeps (request bodies held, connections)."""

    status = 503
    code = "overloaded"


class UpstreamTimedOut(GatewayError):
    status = 504
    code = "upstream_timeout"


def provider_rejection(status: int, body: bytes, dialect: str, secrets: Iterable[str]) -> bytes:
    """A provider's 4xx error body as the client receives it: the provider's secrets
    struck out (from the raw bytes, and from every string of the decoded JSON, where
    the provider may have escaped them), and a body that is not a JSON object (an HTML
    page, plain text) replaced by an error of the gateway's own, in the client's dialect."""
    hidden = tuple(secret for secret in secrets if secret)
    for secret in hidden:
        if secret.encode() in body:
            body = body.replace(secret.encode(), REDACTED.encode())
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        try:
            cleaned = _strike(parsed, hidden) if hidden else parsed
            return body if cleaned is parsed else orjson.dumps(cleaned)
        except (RecursionError, TypeError):  # nested too deeply to walk or write back
            pass
    error = InvalidRequest(f"The provider refused the request (HTTP {status})")
    return error.anthropic_body() if dialect == "anthropic" else error.openai_body()


REDACTED = "[redacted]"


def _strike(value: object, secrets: tuple[str, ...]) -> object:
    """``value`` with every secret replaced in its strings (keys too); the very same
    object when there was nothing to replace."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, list):
        items = [_strike(item, secrets) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        pairs = [(_strike(k, secrets), _strike(v, secrets)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    return value
