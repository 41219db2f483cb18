"""Each of the classifier's marks counts (routing/classifier.py writes their tests out
rather than looping over the tuples: a mark added to a tuple and not to the test, or
lost from it, fails here)."""

from __future__ import annotations

import pytest

from llmgw.routing.classifier import _CODE_MARKS, _REASONING_MARKS, classify


def _level(text: str) -> str:
    return classify({"messages": [{"role": "user", "content": text}]})


@pytest.mark.parametrize("mark", _CODE_MARKS)
def test_each_code_mark_counts_as_code(mark: str) -> None:
    assert _level("look at this please") == "simple"
    assert _level(f"look at this {mark} please") == "medium"  # code: two points
    assert _level(f"look at this {mark.upper()} please") == "medium"  # the scan is lower-cased


@pytest.mark.parametrize("mark", _REASONING_MARKS)
def test_each_reasoning_mark_counts_as_reasoning(mark: str) -> None:
    assert _level("explain this") == "simple"  # one reasoning word: one point
    assert _level(f"explain this {mark}") == "medium"  # and the mark: two
    assert _level(f"explain this {mark} and {mark}") == "medium"  # a mark counts once
