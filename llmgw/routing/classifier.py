"""A deterministic complexity classifier: ``simple``, ``medium`` or ``complex``.

Pure and fast (one word scan, one set intersection and a few substring checks over
at most ``SCAN_CHARS`` of the last user message): points for code, for mathematics
beyond arithmetic, for reasoning words, for length and for conversation depth.
``simple`` below 2 points, ``complex`` from 4.
"""

from __future__ import annotations

import re
from typing import Any

from llmgw.core import content_text

SCAN_CHARS = 4000  # the end of a long message says as much as the rest
# Possessive: backtracking could never make a word end elsewhere, so do not try.
_WORD = re.compile(r"[a-z][a-z0-9+#]*+(?:[.-][a-z0-9+#]++)*+")
_CODE_WORDS = frozenset(
    [
        "def",
        "class",
        "function",
        "import",
        "return",
        "fn",
        "select",
        "python",
        "rust",
        "javascript",
        "typescript",
        "golang",
        "go",
        "java",
        "c++",
        "c#",
        "sql",
        "bash",
        "regex",
        "kotlin",
        "swift",
        "code",
        "implement",
        "refactor",
        "debug",
        "compile",
        "algorithm",
        "api",
        "unit",
        "test",
        "tests",
    ]
)
_CODE_MARKS = ("```", "#include", "=>", "();", "{\n", "stack trace")
_MATH_WORDS = frozenset(
    [
        "prove",
        "proof",
        "theorem",
        "lemma",
        "integral",
        "derivative",
        "differentiate",
        "integrate",
        "equation",
        "matrix",
        "eigenvalue",
        "eigenvalues",
        "eigenvector",
        "probability",
        "infinitely",
        "polynomial",
        "induction",
        "limit",
        "converge",
        "converges",
        "convergence",
    ]
)
_MATH_MARKS = ("^2", "^3", "^n")  # each has a "^"
_MATH_SYMBOLS = ("∑", "∫", "√", "∀", "∃", "≤", "≥", "∞")  # never in ASCII text
_REASONING_WORDS = frozenset(
    [
        "why",
        "explain",
        "analyze",
        "analyse",
        "compare",
        "evaluate",
        "design",
        "tradeoff",
        "tradeoffs",
        "trade-off",
        "trade-offs",
        "reason",
        "reasons",
        "reasoning",
        "justify",
        "critique",
        "optimize",
        "optimise",
        "architecture",
        "strategy",
        "plan",
        "derive",
    ]
)
_REASONING_MARKS = ("step by step", "pros and cons")
_CODE, _MATH, _REASONING = 1, 2, 4
# Each known word's kind, for one set intersection per request (the sets are disjoint).
_KIND = {
    **dict.fromkeys(_CODE_WORDS, _CODE),
    **dict.fromkeys(_MATH_WORDS, _MATH),
    **dict.fromkeys(_REASONING_WORDS, _REASONING),
}
_KNOWN = frozenset(_KIND)


def classify(body: dict[str, Any]) -> str:
    """The complexity of a chat (``messages``) or completions (``prompt``) request."""
    text, depth = _last_text(body)
    scan = text[-SCAN_CHARS:].lower()
    kinds = reasoning = 0
    for word in _KNOWN.intersection(_WORD.findall(scan)):
        kind = _KIND[word]
        kinds |= kind
        reasoning += kind == _REASONING
    points = 0
    # The marks' tests written out (as _CODE_MARKS, _REASONING_MARKS say): a generator
    # over them cost more than the substring searches themselves.
    if kinds & _CODE or (
        "```" in scan
        or "#include" in scan
        or "=>" in scan
        or "();" in scan
        or "{\n" in scan
        or "stack trace" in scan
    ):
        points += 2
    if (
        kinds & _MATH
        or ("^" in scan and any(mark in scan for mark in _MATH_MARKS))
        or (not scan.isascii() and any(mark in scan for mark in _MATH_SYMBOLS))
    ):
        points += 2
    if reasoning < 2:  # else the marks could add nothing
        reasoning += ("step by step" in scan) + ("pros and cons" in scan)
    points += min(2, reasoning)
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
            return content_text(message.get("content")), len(messages)
    return "", len(messages)
