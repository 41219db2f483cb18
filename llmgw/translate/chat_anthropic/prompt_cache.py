"""Anthropic prompt caching asked for through the OpenAI surface.

Anthropic caches a prompt up to each block marked ``cache_control``. OpenAI's format
has no such mark, but clients (LiteLLM's convention) put Anthropic's own on content
parts, system parts and tools; the translation to Anthropic carries each mark onto
the block made from that part or tool. Parts without a mark translate as before.
"""

from __future__ import annotations

from typing import Any

from llmgw.translate import openai_chat as oa


def system_blocks(content: object) -> list[dict[str, Any]]:
    """A system message as text blocks: one per message, or one per part when a part asks
    for prompt caching (``cache_control``), so that its mark stays on its own text."""
    parts = oa.parts_of(content)
    if not any(isinstance(part.get("cache_control"), dict) for part in parts):
        text = oa.text_of(content)
        return [{"type": "text", "text": text}] if text else []
    blocks = [cache_mark({"type": "text", "text": oa.text_of([part])}, part) for part in parts]
    return [block for block in blocks if block["text"]]


def cache_mark(block: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """``block`` with the ``cache_control`` of the OpenAI part (or tool) it came from: the
    way to ask Anthropic for prompt caching through the OpenAI surface."""
    mark = source.get("cache_control")
    return {**block, "cache_control": mark} if isinstance(mark, dict) else block


def mark_tools(tools: list[dict[str, Any]], body: dict[str, Any]) -> None:
    """Carry ``cache_control`` from each OpenAI tool (or its ``function``) to its tool."""
    marks = {}
    for tool in oa.items(body.get("tools")):
        function = oa.obj(tool.get("function"))
        mark = tool.get("cache_control", function.get("cache_control"))
        if isinstance(mark, dict):
            marks[function.get("name")] = mark
    for tool in tools:
        if tool["name"] in marks:
            tool["cache_control"] = marks[tool["name"]]
