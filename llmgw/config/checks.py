"""Rules that need the whole document: names that must refer to something real.

They read the raw document (not the validated model) so that their errors are
reported together with the schema's, in one pass. Each yields ``(path, message)``
so the loader can point at the YAML line like any other error. Values of the wrong
type are left to the schema, which reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

Path = tuple[str | int, ...]
Problem = tuple[Path, str]

_PROVIDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Model names travel into log lines and the X-LLMGW-Model header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check(data: dict[str, object]) -> list[Problem]:
    providers = _mapping(data.get("providers"))
    return [
        *_provider_names(providers),
        *_alias_targets(_mapping(data.get("models")), providers),
        *_candidates(_mapping(data.get("routing")).get("candidates"), providers),
        *_client_keys(_mapping(data.get("auth")).get("keys")),
        *_redis_url("cache", _mapping(data.get("cache")), needs_enabled=True),
        *_embedding_model(data, providers),
        *_redis_url("limits", _mapping(data.get("limits")), needs_enabled=False),
    ]


def _mapping(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _provider_names(providers: dict[str, object]) -> Iterator[Problem]:
    for name in providers:
        if not _PROVIDER_NAME.fullmatch(name):
            yield (
                ("providers", name),
                f"provider name {name!r} may hold only letters, digits, '_', '.' and '-'",
            )


def _alias_targets(aliases: dict[str, object], providers: dict[str, object]) -> Iterator[Problem]:
    for alias, value in aliases.items():
        targets = [value] if isinstance(value, str) else value
        base: Path = ("models", alias)
        if isinstance(value, dict):  # a pool: {strategy, targets: [{target, weight}]}
            pool = value.get("targets")
            if not isinstance(pool, list):
                continue  # the schema reports it
            targets = [t.get("target") if isinstance(t, dict) else t for t in pool]
            base = ("models", alias, "targets")
        if not isinstance(targets, list):
            continue
        if not targets:
            yield ("models", alias), "an alias needs at least one target"
        for index, target in enumerate(targets):
            if not isinstance(target, str):
                continue
            yield from _target(target, (*base, index), providers, str(alias))


def _candidates(candidates: object, providers: dict[str, object]) -> Iterator[Problem]:
    """``routing.candidates``: each a ``provider/model`` of a configured provider."""
    if isinstance(candidates, str):
        candidates = [candidates]
    if not isinstance(candidates, list):
        return
    for index, target in enumerate(candidates):
        if isinstance(target, str):
            yield from _target(target, ("routing", "candidates", index), providers, "")


def _target(target: str, path: Path, providers: dict[str, object], alias: str) -> Iterator[Problem]:
    provider, sep, model = target.partition("/")
    if not sep or not model:
        yield path, f"target {target!r} must be written provider/model"
    elif _CONTROL.search(target) or _CONTROL.search(alias):
        yield path, f"target {target!r} holds a control character"
    elif provider not in providers:
        known = ", ".join(providers) or "none"
        yield path, f"target {target!r} names unknown provider {provider!r} (known: {known})"


def _embedding_model(data: dict[str, object], providers: dict[str, object]) -> Iterator[Problem]:
    """``cache.semantic.embedding_model``, when on, must be a model this gateway serves:
    an alias, a model a provider lists (or any, under a ``*``), or ``provider/model``."""
    semantic = _mapping(_mapping(data.get("cache")).get("semantic"))
    model = semantic.get("embedding_model", "embed")
    if semantic.get("enabled") is not True or not isinstance(model, str):
        return
    provider, sep, _ = model.partition("/")
    if model in _mapping(data.get("models")) or (sep and provider in providers):
        return
    for settings in providers.values():
        listed = _mapping(settings).get("models")
        if isinstance(listed, list) and (model in listed or "*" in listed):
            return
    yield (
        ("cache", "semantic", "embedding_model"),
        f"embedding_model {model!r} is not a model this gateway serves "
        "(an alias, a model a provider lists, or provider/model)",
    )


def _client_keys(keys: object) -> Iterator[Problem]:
    if not isinstance(keys, list):
        return
    seen_names: set[object] = set()
    seen_keys: set[object] = set()
    for index, client in enumerate(keys):
        if not isinstance(client, dict):
            continue
        name = client.get("name")
        if isinstance(name, str) and name in seen_names:
            yield ("auth", "keys", index, "name"), f"duplicate key name {name!r}"
        seen_names.add(name if isinstance(name, str) else None)
        secret = client.get("key") or client.get("key_sha256")
        if not isinstance(secret, str):  # the schema reports the wrong type
            continue
        if secret in seen_keys:
            yield ("auth", "keys", index), "the same key is listed twice"
        seen_keys.add(secret)


def _redis_url(
    section: str, values: dict[str, object], *, needs_enabled: bool
) -> Iterator[Problem]:
    if needs_enabled and str(values.get("enabled")).lower() not in {"true", "1", "yes", "on"}:
        return
    url = values.get("redis_url")
    if values.get("backend") == "redis" and not url:
        yield (section, "redis_url"), "required when backend is redis (is REDIS_URL set?)"
    elif isinstance(url, str) and url and not re.match(r"rediss?://|unix://", url):
        yield (section, "redis_url"), "must start with redis://, rediss:// or unix://"
