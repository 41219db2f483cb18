"""gateway.yaml text → a valid ``GatewayConfig``, or one error listing every problem.

The YAML is composed into nodes (not loaded) so that every value keeps its line and
column; ``${VAR}`` and ``${VAR:-default}`` are substituted in string scalars only,
before validation, so a secret never passes through YAML parsing twice. Schema
errors from pydantic and the whole-document checks are then mapped back to the
nodes: ``gateway.yaml:14:5: providers.openai.timeout: invalid duration 'abc'``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
import yaml
from pydantic import BaseModel, ValidationError

from llmgw.config.checks import Path, check
from llmgw.config.providers import PROVIDER_MODELS, PROVIDER_TYPES
from llmgw.config.schema import GatewayConfig

_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"
# Values a document may hold once its aliases are expanded: far beyond any real config,
# far below what makes an alias bomb ("billion laughs") take time or memory.
MAX_VALUES = 100_000
MIN_HIDDEN = 8  # environment values this long are never quoted in an error


class ConfigError(Exception):
    """The file is not a valid config; ``errors`` holds one located line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _TooLarge(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark


@dataclass
class _Document:
    """A YAML document as plain data, with the position of every key and value."""

    filename: str
    environ: Mapping[str, str]
    text: str = ""
    values: dict[Path, yaml.Mark] = field(default_factory=dict)
    keys: dict[Path, yaml.Mark] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    unset: set[Path] = field(default_factory=set)  # values whose ${VAR} is not set
    built: int = 0  # values built so far (an alias is built again at each use)
    from_env: dict[str, str] = field(default_factory=dict)  # ${VAR} → its value, if long
    _constructor: yaml.constructor.SafeConstructor = field(
        default_factory=yaml.constructor.SafeConstructor
    )

    def build(self, node: yaml.Node, path: Path) -> object:
        self.built += 1
        if self.built > MAX_VALUES:
            raise _TooLarge(node.start_mark)
        self.values[path] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag == _STR_TAG:
            return self._substitute(str(node.value), path)
        return self._constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, object]:
        self._constructor.flatten_mapping(node)
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append((path, "mapping keys must be plain names"))
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                self.keys[child] = key_node.start_mark
                self.problems.append((child, f"duplicate key {key!r}"))
                continue
            self.keys[child] = key_node.start_mark
            result[key] = self.build(value_node, child)
        return result

    def _substitute(self, text: str, path: Path) -> str:
        if "$" not in text:
            return text

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                self.problems.append((path, f"environment variable {name} is not set"))
                self.unset.add(path)
                return match.group(0)
            if not value.isascii() and _undecodable(value):
                self.problems.append((path, f"environment variable {name} is not valid UTF-8"))
                self.unset.add(path)
                return ""
            if len(value) >= MIN_HIDDEN:
                self.from_env[name] = value
            return value

        return _ENV.sub(replace, text)

    def hide(self, error: str) -> str:
        """``error`` with every value that came from the environment written as ``${VAR}``:
        a key put in the wrong field must not be quoted in a log or an API answer."""
        cut = error.find(": ", len(self.filename))
        message = error[cut:]
        for name, value in self.from_env.items():
            message = message.replace(value, f"${{{name}}}")
        return error[:cut] + message

    def locate(self, path: Path, *, key: bool = False) -> str:
        """``file:line:col`` of the deepest part of ``path`` present in the file."""
        for depth in range(len(path), -1, -1):
            prefix = path[:depth]
            mark = (self.keys.get(prefix) if key else None) or self.values.get(prefix)
            if mark is not None:
                return where(self.filename, self.text, mark)
            key = False
        return f"{self.filename}:1:1"


def where(filename: str, text: str, mark: yaml.Mark) -> str:
    """``file:line:col`` as an editor counts lines: YAML also breaks lines at NEL,
    U+2028 and U+2029, which editors show inside a line."""
    index = min(mark.index, len(text))
    line_start = text.rfind("\n", 0, index) + 1
    return f"{filename}:{text.count(chr(10), 0, index) + 1}:{index - line_start + 1}"


def parse(
    text: str, filename: str = "gateway.yaml", environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate ``text`` completely; raise ``ConfigError`` naming every problem."""
    doc = _Document(filename, os.environ if environ is None else environ, text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = {} if root is None else doc.build(root, ())  # tags and merge keys may fail
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = where(filename, text, mark) if mark else f"{filename}:1:1"
        raise ConfigError([f"{at}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{filename}:1:1: invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{filename}:1:1: invalid YAML: nested too deeply"]) from None
    except _TooLarge as exc:
        message = f"the document is too large: over {MAX_VALUES} values once aliases expand"
        raise ConfigError([f"{where(filename, text, exc.mark)}: {message}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{filename}:1:1: the config must be a mapping of sections"])

    errors = [f"{doc.locate(p)}: {_dotted(p) or '<root>'}: {m}" for p, m in doc.problems]
    config: GatewayConfig | None = None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        errors.extend(
            _schema_error(doc, data, err)
            for err in exc.errors()
            if _strip_tags(tuple(err["loc"]), data) not in doc.unset
        )
    errors.extend(f"{doc.locate(p)}: {_dotted(p)}: {m}" for p, m in check(data))
    if errors:
        raise ConfigError(sorted({doc.hide(error) for error in errors}, key=_position))
    assert config is not None
    return config


def read_text(path: str) -> str:
    """The config file's text; ``ConfigError`` naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config: {exc}"]) from None


def load(path: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    return parse(read_text(path), path, environ)


def digest(config: GatewayConfig) -> str:
    """A short, stable hash of the resolved config (for ``llmgw_config_info``)."""
    dumped = orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(dumped).hexdigest()[:12]


def _schema_error(doc: _Document, data: dict[str, object], err: object) -> str:
    assert isinstance(err, dict)
    path = _strip_tags(tuple(err["loc"]), data)
    kind = err["type"]
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        message = f"unknown key {path[-1]!r}{_suggest(path, data)}"
        return f"{doc.locate(path, key=True)}: {_dotted(path)}: {message}"
    if kind == "missing":
        return f"{doc.locate(path)}: {_dotted(path)}: required key is missing"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        message = f"type must be one of {', '.join(PROVIDER_TYPES)}"
        path = (*path, "type")
    return f"{doc.locate(path)}: {_dotted(path)}: {message}"


def _strip_tags(loc: tuple[str | int, ...], data: dict[str, object]) -> Path:
    """Pydantic puts the discriminator value into the path of a provider: drop it."""
    if len(loc) >= 3 and loc[0] == "providers" and loc[2] in PROVIDER_TYPES:
        providers = data.get("providers")
        entry = providers.get(loc[1]) if isinstance(providers, dict) else None
        if isinstance(entry, dict) and entry.get("type") == loc[2]:
            return (*loc[:2], *loc[3:])
    return loc


def _suggest(path: Path, data: dict[str, object]) -> str:
    """'did you mean …' from the keys the enclosing section accepts."""
    model = _model_at(path[:-1], data)
    if model is None:
        return ""
    names = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(path[-1]), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: Path, data: object) -> type[BaseModel] | None:
    """The schema model that validates the mapping at ``path``, if one does."""
    model: type[BaseModel] = GatewayConfig
    node = data
    skip = False  # the next part is a list index or a mapping key, not a field
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
        if skip:
            skip = False
            if model is GatewayConfig:  # inside providers: the entry's type decides
                kind = node.get("type") if isinstance(node, dict) else None
                found = PROVIDER_MODELS.get(str(kind))
                if found is None:
                    return None
                model = found
            continue
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        annotation = fields[str(part)].annotation if str(part) in fields else None
        if model is GatewayConfig and part == "providers":
            skip = True
            continue
        inner = _model_in(annotation)
        if inner is None:
            return None
        skip = inner is not annotation and not _is_optional_model(annotation, inner)
        model = inner
    return model


def _is_optional_model(annotation: object, inner: type[BaseModel]) -> bool:
    return set(getattr(annotation, "__args__", ())) <= {inner, type(None)}


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _undecodable(value: str) -> bool:
    """Whether an environment value holds bytes that were not UTF-8 (surrogate escapes)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _position(error: str) -> tuple[int, int, str]:
    parts = error.split(":", 3)
    try:
        return int(parts[1]), int(parts[2]), error
    except (IndexError, ValueError):
        return 0, 0, error
