"""gateway.yaml: the whole schema validated at once, every error located."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydantic
import pytest

from llmgw.config import ConfigError, parse
from llmgw.config.units import parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
providers:
  demo: {type: mock}
"""


def errors_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, "gw.yaml", environ or {})
    return caught.value.errors


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("1m30s", 90), (7, 7), ("2.5", 2.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512KiB", 512 * 1024),
        ("20MiB", 20 * 1024**2),
        ("1GB", 10**9),
        (100, 100),
        ("1 MB", 10**6),
        ("512Mi", 512 * 1024**2),
        ("1ti", 1024**4),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["abc", "10 parsecs", "-1s", "", True, "5mm"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_shipped_config_is_valid_without_any_key() -> None:
    config = parse((ROOT / "gateway.yaml").read_text(), "gateway.yaml", {})
    assert config.providers["openai"].api_key is None
    assert config.providers["demo"].type == "mock"
    assert config.routing.candidates is not None and "demo/echo" in config.routing.candidates
    assert dict(config.routing.virtual_models) == {
        "auto": "balanced",
        "fast": "latency",
        "cheap": "cost",
    }


def test_defaults_and_types() -> None:
    config = parse(MINIMAL, environ={})
    assert config.server.port == 8080
    assert config.server.max_body_size == 20 * 1024**2
    assert config.server.shutdown_timeout == 30.0
    assert config.server.write_timeout == 60.0
    assert parse(MINIMAL + "server: {write_timeout: 500ms}\n", environ={}).server.write_timeout == 0.5
    assert config.routing.circuit_breaker.failures == 5
    assert config.cache.enabled is False


def test_snapshot_is_deeply_immutable() -> None:
    config = parse(MINIMAL + "models:\n  fast: [demo/a]\n", environ={})
    with pytest.raises(pydantic.ValidationError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.providers["other"] = config.providers["demo"]  # type: ignore[index]
    assert isinstance(config.models["fast"], tuple)
    assert not dataclasses.is_dataclass(config)


def test_env_substitution() -> None:
    text = """
server:
  port: ${PORT:-9000}
providers:
  openai: {type: openai, api_key: "${OPENAI_KEY}", models: [gpt-4o]}
  other: {type: openai, api_key: "${UNSET_KEY:-}", base_url: "${URL:-http://h:1/v1}"}
  demo: {type: mock, headers: {X-Price: "$$5"}}
"""
    config = parse(text, environ={"OPENAI_KEY": "sk-1", "PORT": ""})
    assert config.server.port == 9000
    assert config.providers["openai"].api_key == "sk-1"
    assert config.providers["other"].api_key is None
    assert config.providers["other"].base_url == "http://h:1/v1"
    assert config.providers["demo"].headers["X-Price"] == "$5"


def test_unset_variable_is_a_located_error() -> None:
    text = "providers:\n  openai:\n    type: openai\n    api_key: ${OPENAI_KEY}\n"
    assert errors_of(text) == [
        "gw.yaml:4:14: providers.openai.api_key: environment variable OPENAI_KEY is not set"
    ]


def test_every_error_is_reported_with_its_line() -> None:
    text = """\
server:
  port: 99999
providers:
  openai:
    type: openai
    timeout: abc
    timout: 3s
  bad:
    type: nope
models:
  smart: [nobody/x, openai]
cache:
  enbled: true
limits:
  models:
    gpt-4o: {rpm: 0}
auth:
  keys:
    - {name: a, key: k1}
    - {name: a, key: k2}
"""
    errors = errors_of(text)
    assert errors == [
        "gw.yaml:2:9: server.port: Input should be less than or equal to 65535",
        "gw.yaml:6:14: providers.openai.timeout: invalid duration 'abc' "
        "(use e.g. 250ms, 30s, 5m, 1h)",
        "gw.yaml:7:5: providers.openai.timout: unknown key 'timout' (did you mean 'timeout'?)",
        "gw.yaml:9:11: providers.bad.type: type must be one of openai, azure, anthropic, "
        "gemini, mock, groq, openrouter, together, huggingface, mistral, deepseek, ollama, vllm",
        "gw.yaml:11:11: models.smart.0: target 'nobody/x' names unknown provider 'nobody' "
        "(known: openai, bad)",
        "gw.yaml:11:21: models.smart.1: target 'openai' must be written provider/model",
        "gw.yaml:13:3: cache.enbled: unknown key 'enbled' (did you mean 'enabled'?)",
        "gw.yaml:16:19: limits.models.gpt-4o.rpm: Input should be greater than or equal to 1",
        "gw.yaml:20:14: auth.keys.1.name: duplicate key name 'a'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers: [\n", "invalid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("providers: {}\n", "providers: "),
        ("providers:\n  a: {type: mock}\n  a: {type: mock}\n", "duplicate key 'a'"),
        ("server: {}\n", "providers: required key is missing"),
        ("providers:\n  x/y: {type: mock}\n", "may hold only"),
        (MINIMAL + "cache: {enabled: true, backend: redis}\n", "cache.redis_url: required"),
        (MINIMAL + "auth:\n  keys:\n    - {name: a}\n", "exactly one of key or key_sha256"),
        (MINIMAL + "auth:\n  keys:\n    - {name: a, key_sha256: abc}\n", "64-character hex"),
        (MINIMAL + "routing: {fallback_on: [600]}\n", "not an HTTP error status"),
        (MINIMAL + "routing: {fallback_on: [sometimes]}\n", "unknown condition"),
        ("providers:\n  az: {type: azure}\n", "base_url is required for azure"),
        ("providers:\n  o: {type: openai, base_url: ftp://x}\n", "invalid URL"),
        (MINIMAL + "logging: {level: loud}\n", "logging.level"),
        (MINIMAL + "server: {write_timeout: 0s}\n", "server.write_timeout: must be greater than 0"),
    ],
)
def test_rejections(text: str, expected: str) -> None:
    joined = "\n".join(errors_of(text))
    assert expected in joined
    assert joined.startswith("gw.yaml:")


def test_error_lines_are_counted_as_editors_count_them() -> None:
    """YAML also breaks lines at NEL, U+2028 and U+2029; an editor shows those inside a
    line, so the error must point where the editor shows the key (found by fuzzing)."""
    for breaker in ("\x85", "\u2028", "\u2029"):
        text = f"providers: {{demo: {{type: mock}}}}\nserver:\n  port: 80{breaker}  # x\nlogging:\n  level: bogus\n"
        with pytest.raises(ConfigError) as raised:
            parse(text)
        assert raised.value.errors == [
            "gateway.yaml:5:10: logging.level: Input should be 'debug', 'info', 'warning' or 'error'"
        ]
