"""Property-based tests of the config parser: whatever the text, ``parse`` returns a
snapshot or raises ``ConfigError`` whose every line names the file, line and column.
It never crashes, never hangs, and never quotes a secret back.
"""

from __future__ import annotations

import os
import re
import string
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmgw.config import ConfigError, GatewayConfig, parse
from llmgw.config.units import parse_duration, parse_size

SHIPPED = (Path(__file__).resolve().parent.parent / "gateway.yaml").read_text()
LOCATED = re.compile(r"gw\.yaml:(\d+):(\d+): ")
SECRET = "sk-fuzz-secret-5b1e2f"
ENVIRON = {"SECRET": SECRET, "EMPTY": "", "OPENAI_API_KEY": SECRET}
# Bounded for CI; LLMGW_FUZZ_EXAMPLES=5000 fuzzes deeper on demand.
EXAMPLES = int(os.environ.get("LLMGW_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def outcome(text: str) -> GatewayConfig | ConfigError:
    """Parse; anything but a snapshot or a ConfigError fails the property."""
    try:
        return parse(text, "gw.yaml", ENVIRON)
    except ConfigError as error:
        lines = text.count("\n") + 2
        for line in error.errors:
            match = LOCATED.match(line)
            assert match, line
            assert 1 <= int(match.group(1)) <= lines, line
        assert SECRET not in str(error)
        return error


# Any text at all ---------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=300))
@example("[" * 5000)
@example("x: " + "[" * 3000 + "]" * 3000)
@example("".join("  " * i + f"k{i}:\n" for i in range(1500)))
@example("providers: !!binary zz")
@example("providers:\n  demo: {<<: [1, 2], type: mock}")
@example("providers:\n  demo:\n    <<: 5\n    type: mock")
@example("providers: !!python/object:os.system {}")
@example("? [a, b]\n: 1")
def test_any_text_is_a_snapshot_or_a_located_error(text: str) -> None:
    outcome(text)


@FUZZ
@given(st.data())
def test_edits_of_the_shipped_config_are_a_snapshot_or_a_located_error(data: st.DataObject) -> None:
    text = SHIPPED
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 12))
        insert = data.draw(
            st.sampled_from(
                [
                    "",
                    ":",
                    " ",
                    "\n",
                    "- ",
                    "[",
                    "{",
                    "}",
                    "${X}",
                    "&a",
                    "*a",
                    "!!str",
                    "\t",
                    "'",
                    "#",
                ]
            )
        )
        text = text[:at] + insert + text[at + cut :]
    outcome(text)


def test_alias_bombs_are_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    began = time.perf_counter()
    error = outcome("\n".join(lines) + "\nproviders: {demo: {type: mock}}\n")
    assert isinstance(error, ConfigError) and "too large" in str(error)
    assert time.perf_counter() - began < 2


# Documents shaped like the schema, with every kind of wrong value --------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=string.printable, max_size=12),
    st.sampled_from(
        [
            "30s",
            "250ms",
            "1m30s",
            "-1s",
            "inf",
            "nan",
            ".inf",
            "1e999",
            "20MiB",
            "0",
            "",
            "${SECRET}",
            "${MISSING}",
            "${EMPTY:-5s}",
            "$$",
            "http://127.0.0.1:1/v1",
            "redis://:pw@127.0.0.1:6379",
            "mock",
            "openai",
            "anthropic",
            "gemini",
            "azure",
            "memory",
            "redis",
            "global",
            "key",
            "connect_error",
            "demo/echo",
            "*",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
PROVIDER_KEYS = [
    "type",
    "api_key",
    "base_url",
    "models",
    "timeout",
    "read_timeout",
    "max_retries",
    "max_concurrency",
    "headers",
    "api_version",
    "anthropic_version",
    "default_max_tokens",
    "latency",
    "chunk_delay",
    "embedding_dimensions",
    "modles",
]
SECTIONS: dict[str, list[str]] = {
    "server": [
        "host",
        "port",
        "max_body_size",
        "max_pending_body_bytes",
        "max_connections",
        "shutdown_timeout",
        "cors_origins",
    ],
    "logging": ["level", "format", "log_prompts"],
    "routing": ["fallback_on", "circuit_breaker"],
    "cache": ["enabled", "backend", "redis_url", "ttl", "max_size", "scope"],
    "limits": ["backend", "redis_url", "on_redis_error", "global", "models"],
    "auth": ["admin_key", "keys"],
}


def section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=4)


provider = st.fixed_dictionaries(
    {"type": st.sampled_from(["mock", "openai", "anthropic", "gemini", "azure", "nope"])},
    optional={
        "api_key": st.just("${SECRET}"),
        "base_url": st.sampled_from(["http://127.0.0.1:1/v1", "ftp://x", "${SECRET}x"]),
    },
).flatmap(lambda base: section(PROVIDER_KEYS).map(lambda extra: {**extra, **base}))
client_key = st.fixed_dictionaries(
    {"name": st.text(max_size=4)},
    optional={
        "key": st.just("${SECRET}"),
        "models": values,
        "limits": values,
        "key_sha256": values,
    },
)
documents = st.fixed_dictionaries(
    {"providers": st.dictionaries(st.text(max_size=8), provider, max_size=3)},
    optional={
        **{name: section(keys) for name, keys in SECTIONS.items()},
        "models": st.dictionaries(st.text(max_size=6), values, max_size=3),
        "prices": st.dictionaries(st.text(max_size=6), values, max_size=2),
        "auth": st.fixed_dictionaries(
            {"keys": st.lists(client_key, max_size=3)},
            optional={"admin_key": st.just("${SECRET}")},
        ),
        "unknown": values,
    },
)


@FUZZ
@given(documents)
@example({"providers": {"a": {"type": "mock"}}, "auth": {"keys": [{"name": ["x"], "key": ["k"]}]}})
@example({"providers": {"a": {"type": "openai", "base_url": "${SECRET}x"}}})
@example({"providers": {"a": {"type": "mock", "timeout": float("nan")}}})
def test_schema_shaped_documents_are_a_snapshot_or_a_located_error(
    document: dict[str, Any],
) -> None:
    result = outcome(yaml.safe_dump(document, default_flow_style=False, allow_unicode=True))
    if isinstance(result, GatewayConfig):  # a valid snapshot is immutable and finite
        assert result.server.shutdown_timeout >= 0
        for settings_ in result.providers.values():
            assert 0 < settings_.timeout < float("inf") and 0 < settings_.read_timeout < float(
                "inf"
            )


# Units ------------------------------------------------------------------------------------------


@settings(max_examples=2 * EXAMPLES, deadline=None, database=None)
@given(st.one_of(scalars, st.text(alphabet="0123456789.e+-msh KMGTiBb", max_size=10)))
def test_units_parse_or_raise_value_error(value: object) -> None:
    for parse_unit in (parse_duration, parse_size):
        try:
            result = parse_unit(value)
        except ValueError:
            continue
        assert result >= 0 and result < float("inf"), (value, result)


@pytest.mark.parametrize("text", ["nan", "inf", ".nan", ".inf", "1e999", "-.inf"])
def test_durations_that_are_not_finite_are_errors(text: str) -> None:
    result = outcome(f"providers:\n  demo: {{type: mock, timeout: {text}}}\n")
    assert isinstance(result, ConfigError) and "timeout" in str(result)


def test_environment_value_that_is_not_utf8_is_a_located_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("providers:\n  up: {type: openai, api_key: '${K}'}\n", "gw.yaml", {"K": "sk-\udcff"})
    assert caught.value.errors[0].startswith("gw.yaml:2:")
    assert "K" in caught.value.errors[0] and "\udcff" not in str(caught.value)
