"""A deterministic complexity classifier: ``simple``, ``medium`` or ``complex``.

Pure and fast (a few regex scans over at most ``SCAN_CHARS`` of the last user
message): points for code, for mathematics beyond arithmetic, for reasoning words,
for length and for conversation depth. ``simple`` below 2 points, ``complex`` from 4.
"""

from __future__ import annotations

import re
from typing import Any

SCAN_CHARS = 4000  # the end of a long message says as much as the rest
_CODE = re.compile(
    r"```|\bdef |\bclass |\bfunction\b|\bimport |#include|=>|\bfn |\breturn\b|\bselect .* from\b"
    r"|\b(?:python|rust|javascript|typescript|golang|java|c\+\+|sql|bash|regex|kotlin|swift)\b"
    r"|\b(?:code|implement|refactor|debug|compile|algorithm|api|stack trace|unit tests?)\b",
    re.IGNORECASE,
)
_MATH = re.compile(
    r"\b(?:prove|proof|theorem|lemma|integral|derivative|differentiate|integrate|equation"
    r"|matrix|eigen\w*|probability|infinitely|polynomial|induction|limit of|converge\w*)\b"
    r"|[∑∫√∀∃≤≥∞]|\^\d",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(?:why|explain|analy[sz]e|compare|evaluate|design|trade-?offs?|step by step|reason\w*"
    r"|justify|critique|optimi[sz]e|architecture|strategy|plan|derive|pros and cons)\b",
    re.IGNORECASE,
)
LEVELS = ("simple", "medium", "complex")


def classify(body: dict[str, Any]) -> str:
    """The complexity of a chat (``messages``) or completions (``prompt``) request."""
    text, depth = _last_text(body)
    scan = text[-SCAN_CHARS:]
    points = 0
    if _CODE.search(scan):
        points += 2
    if _MATH.search(scan):
        points += 2
    points += min(2, len(_REASONING.findall(scan)))
    if len(text) > 400:
        points += 1
    if len(text) > 2000:
        points += 1
    if depth > 6:
        points += 1
    if depth > 12:
        points += 1
    return "simple" if points < 2 else "complex" if points >= 4 else "medium"


def _last_text(body: dict[str, Any]) -> tuple[str, int]:
    """The last user message's text, and how many messages the conversation has."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        prompt = body.get("prompt")
        return (prompt if isinstance(prompt, str) else ""), 1
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content")), len(messages)
    return "", len(messages)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
