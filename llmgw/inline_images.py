"""Chat ``image_url`` parts naming http(s) URLs, fetched and inlined as ``data:`` URLs
for providers that cannot fetch URLs themselves (Gemini takes ``inlineData``, or
``fileData`` only for files it hosts). Runs before the attempt, on a copy of the
call; the translators stay pure and see only ``data:`` URLs.

Fetched only from public addresses (``http.public_fetch``), at most
``MAX_IMAGE_BYTES`` for all of a call's images together, within the provider's
timeout. A refused or failed fetch is the request's fault: a 400 naming the part.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import orjson

from llmgw.core import Call, Unsupported
from llmgw.http.public_fetch import (
    MAX_IMAGE_BYTES,
    AddressPolicy,
    FetchFailed,
    FetchRefused,
    fetch_image,
)
from llmgw.translate import openai_chat as oa

Where = tuple[int, int]  # message index, content part index


def remote_images(call: Call) -> list[tuple[Where, str]]:
    """The http(s) URLs of the call's chat image parts, with where each part is."""
    if call.endpoint != "chat":
        return []
    found: list[tuple[Where, str]] = []
    for at, message in enumerate(oa.items(call.body.get("messages"))):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for n, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = oa.image_url(part)
                if url.lower().startswith(("http://", "https://")):
                    found.append(((at, n), url))
    return found


async def inline_images(call: Call, policy: AddressPolicy, deadline: float) -> Call:
    """``call`` with each remote image part's URL replaced by a ``data:`` URL of its
    bytes; ``call`` itself when it has none. All fetched by ``deadline`` (loop time).
    Raises ``Unsupported`` naming the part (``messages[i].content[j]``) when an image
    is refused or cannot be fetched."""
    remote = remote_images(call)
    if not remote:
        return call
    budget = MAX_IMAGE_BYTES
    inlined: dict[Where, str] = {}
    for (at, n), url in remote:
        where = f"messages[{at}].content[{n}]"
        try:
            kind, data = await fetch_image(url, policy, deadline, budget)
        except FetchRefused as exc:
            raise Unsupported(f"image URL refused: {exc}", param=where) from None
        except FetchFailed as exc:
            raise Unsupported(f"image URL not fetched: {exc}", param=where) from None
        budget -= len(data)
        inlined[(at, n)] = f"data:{kind};base64,{base64.b64encode(data).decode()}"
    body = _replaced(call.body, inlined)
    return replace(call, body=body, raw=orjson.dumps(body))


def _replaced(body: dict[str, Any], inlined: dict[Where, str]) -> dict[str, Any]:
    """A copy of ``body`` with the parts at ``inlined``'s places pointing at its URLs
    (only the lists and objects on the way are copied)."""
    messages = list(body["messages"])
    for (at, n), url in inlined.items():
        message = dict(messages[at])
        content = list(message["content"])
        part = dict(content[n])
        image = part.get("image_url")
        part["image_url"] = {**image, "url": url} if isinstance(image, dict) else {"url": url}
        content[n] = part
        message["content"] = content
        messages[at] = message
    return {**body, "messages": messages}
