"""What the client is told when no target answered: the fallback loop's verdict.

Every target failed or was skipped: ``final_error`` picks the one gateway error that
says why (rate limited, overloaded, timed out, unsupported, ...), with the client's
``Retry-After``; ``advise`` adds ``x-should-retry: false`` where a retry would meet the
same failure. Pure functions of the failures ``forward`` collected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from llmgw.core import ENDPOINT_PATHS, Call
from llmgw.errors import (
    GatewayError,
    InvalidRequest,
    NoProviderAvailable,
    RateLimited,
    UnsupportedEndpoint,
    UpstreamFailed,
    UpstreamTimedOut,
)
from llmgw.upstream import AttemptFailure


def final_error(
    call: Call, failures: list[tuple[str, AttemptFailure]], skipped: list[str]
) -> GatewayError:
    """Every target failed or was skipped: one gateway error, in the gateway's words."""
    if not failures:
        reasons = "; ".join(skipped) or "no targets"
        return NoProviderAvailable(f"No provider can serve '{call.model}' right now ({reasons})")
    if all(f.kind == "unsupported" for _, f in failures):
        named = next((f for _, f in failures if f.param), None)
        if named is not None:  # a parameter or content part, not the endpoint
            return InvalidRequest(
                f"The model '{call.model}' cannot serve this request: {named.message}",
                param=named.param,
            )
        path = ENDPOINT_PATHS.get(call.endpoint, call.endpoint)
        return UnsupportedEndpoint(
            f"No provider of the model '{call.model}' serves POST {path}", param="model"
        )
    if all(f.kind == "busy" for _, f in failures):
        return NoProviderAvailable(f"Every provider for '{call.model}' is at its concurrency limit")
    summary = "; ".join(f"{name}: {failure.outcome}" for name, failure in failures)
    if all(_status(f) == 429 for _, f in failures):
        return RateLimited(
            f"Every provider for '{call.model}' is rate limited ({summary})",
            headers=client_retry_after(failures),
        )
    if all(_status(f) in OVERLOADED for _, f in failures):
        return NoProviderAvailable(
            f"Every provider for '{call.model}' is overloaded ({summary})",
            headers=client_retry_after(failures),
        )
    if all(f.kind == "timeout" for _, f in failures):
        return UpstreamTimedOut(f"Every provider for '{call.model}' timed out ({summary})")
    return UpstreamFailed(f"Every provider for '{call.model}' failed ({summary})")


OVERLOADED = (503, 529)  # Anthropic's 529 is read as 503 by its adapter; others may send it
# A provider's 4xx that fell back and that no SDK retries: the same request fails again.
_LASTING = frozenset(range(400, 500)) - {408, 409, 429}


def _status(failure: AttemptFailure) -> int | None:
    return failure.status if failure.kind == "status" else None


def client_retry_after(failures: Sequence[tuple[str, AttemptFailure]]) -> dict[str, str]:
    """``Retry-After`` for the client: the soonest that a provider said it would take
    requests again (each provider's latest word), whole seconds rounded up; none when no
    provider said."""
    latest = {name: failure.retry_at for name, failure in failures}
    deadlines = [at for at in latest.values() if at is not None]
    if not deadlines:
        return {}
    return {"Retry-After": str(math.ceil(max(0.0, min(deadlines) - time.monotonic())))}


def advise(
    error: GatewayError, failures: Sequence[tuple[str, AttemptFailure]], circuit_open: bool
) -> GatewayError:
    """``x-should-retry: false`` (honoured by the openai and anthropic SDKs) on a 5xx that
    the same request would meet again: every target disabled, or every failure one that
    lasts (unsupported, a credential or other 4xx), with no circuit that may close."""
    lasting = all(f.kind == "unsupported" or _status(f) in _LASTING for _, f in failures)
    if error.status >= 500 and lasting and not circuit_open:
        error.headers["x-should-retry"] = "false"
    return error
