"""OpenAI chat and embeddings requests as Gemini ``generateContent`` and
``batchEmbedContents`` requests. Pure, no I/O."""

from __future__ import annotations

import mimetypes
from types import MappingProxyType
from typing import Any

from llmgw.core import Unsupported
from llmgw.translate import openai_chat as oa

_MODES = MappingProxyType({"auto": "AUTO", "none": "NONE", "required": "ANY"})
_CONFIG = MappingProxyType(
    {  # OpenAI request field → generationConfig field, copied as they are
        "temperature": "temperature",
        "top_p": "topP",
        "n": "candidateCount",
        "presence_penalty": "presencePenalty",
        "frequency_penalty": "frequencyPenalty",
        "seed": "seed",
    }
)
_AUDIO = MappingProxyType({"wav": "audio/wav", "mp3": "audio/mp3"})
# reasoning_effort → thinkingConfig.thinkingBudget: Google's own OpenAI-compatible
# endpoint uses 1K / 8K / 24K for low / medium / high and 0 (no thinking) for none.
BUDGETS = MappingProxyType(
    {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
)


# OpenAI request → Gemini request ---------------------------------------------------


def generate_request(body: dict[str, Any]) -> dict[str, Any]:
    system, contents = _contents(oa.items(body.get("messages")))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    if config := _generation_config(body):
        out["generationConfig"] = config
    if functions := oa.function_tools(body):
        out["tools"] = [{"functionDeclarations": [_declaration(f) for f in functions]}]
        if tool_config := _tool_config(body.get("tool_choice")):
            out["toolConfig"] = tool_config
    return out


def _contents(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, for the tool results
    for at, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(oa.text_of(message.get("content")))
        elif role == "assistant":
            _append(contents, "model", _model_parts(message, names))
        elif role == "tool":
            ident = str(message.get("tool_call_id") or "")
            _append(contents, "user", [_function_response(message, names.get(ident))])
        elif role == "user":
            parts = enumerate(oa.parts_of(message.get("content")))
            _append(contents, "user", [_part(p, f"messages[{at}].content[{n}]") for n, p in parts])
    return [s for s in system if s], contents


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"text": str(part.get("text") or "")}
    if kind == "image_url":
        url = oa.image_url(part)
        inline = oa.parse_data_url(url)
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
        mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    if kind == "input_audio":
        audio = oa.obj(part.get("input_audio"))
        mime = _AUDIO.get(str(audio.get("format")), "audio/wav")
        return {"inlineData": {"mimeType": mime, "data": str(audio.get("data") or "")}}
    if kind == "file":
        inline = oa.parse_data_url(str(oa.obj(part.get("file")).get("file_data") or ""))
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    raise Unsupported(f"gemini providers do not support '{kind}' content parts", param=where)


def _model_parts(message: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    text = oa.text_of(message.get("content"))
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for call in oa.items(message.get("tool_calls")):
        function = oa.obj(call.get("function"))
        name = str(function.get("name") or "")
        names[str(call.get("id") or "")] = name
        args = oa.arguments(function.get("arguments"))
        parts.append({"functionCall": {"name": name, "args": args}})
    return parts


def _function_response(message: dict[str, Any], name: str | None) -> dict[str, Any]:
    text = oa.text_of(message.get("content"))
    result = oa.load(text.encode()) or {"content": text}  # Gemini wants an object
    name = name or str(message.get("name") or "")
    return {"functionResponse": {"name": name, "response": result}}


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config = {
        target: body[source]
        for source, target in _CONFIG.items()
        if isinstance(body.get(source), int | float) and not isinstance(body[source], bool)
    }
    if (limit := oa.max_tokens(body)) is not None:
        config["maxOutputTokens"] = limit
    if stop := oa.stop_list(body):
        config["stopSequences"] = stop
    response_format = oa.obj(body.get("response_format"))
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = oa.obj(response_format.get("json_schema")).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema  # full JSON Schema; responseSchema is a subset
    if (thinking := _thinking(body.get("reasoning_effort"))) is not None:
        config["thinkingConfig"] = thinking
    return config


def _thinking(effort: object) -> dict[str, Any] | None:
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in BUDGETS:
        raise Unsupported(
            f"gemini providers do not support reasoning_effort {effort!r}",
            param="reasoning_effort",
        )
    return {"thinkingBudget": BUDGETS[effort]}


def _declaration(function: dict[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    if isinstance(function.get("parameters"), dict):
        # Plain JSON Schema, as OpenAI clients write it (``parameters`` takes a subset).
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _tool_config(choice: object) -> dict[str, Any] | None:
    if name := oa.forced_tool(choice):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if isinstance(choice, str) and choice in _MODES:
        return {"functionCallingConfig": {"mode": _MODES[choice]}}
    return None


def embed_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    if not texts or not all(isinstance(text, str) for text in texts):
        raise Unsupported("gemini embeddings take text input, not token arrays")
    extra: dict[str, Any] = {}
    if isinstance(body.get("dimensions"), int):
        extra["outputDimensionality"] = body["dimensions"]
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra}
            for text in texts
        ]
    }
