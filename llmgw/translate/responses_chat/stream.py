"""OpenAI ``chat.completion.chunk`` events → the Responses API's stream events, for a
``/v1/responses`` client served through chat: ``response.created``,
``response.in_progress``, then per output item ``output_item.added``, its text
(``content_part.added``, ``output_text.delta``/``done``, ``content_part.done``) or
function arguments (``function_call_arguments.delta``/``done``), ``output_item.done``,
and last ``response.completed`` with the whole output and usage. Pure, no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from llmgw.core import Call, StreamTranslator, Usage
from llmgw.errors import stream_error_event
from llmgw.sse import Event, encode
from llmgw.translate import openai_chat as oa
from llmgw.translate.chat_chunks import ChatChunkReader
from llmgw.translate.responses_chat import answer as ra


class ResponsesStream(ChatChunkReader):
    """Chat chunks (from ``inner``, when the provider is not OpenAI-compatible) in,
    Responses events out."""

    def __init__(self, call: Call, model: str, inner: StreamTranslator | None = None) -> None:
        super().__init__(inner)
        self._call = call
        self._model = model
        self._sequence = 0
        self._response: dict[str, Any] | None = None
        self._item: dict[str, Any] | None = None  # the open output item
        self._tool_index: object = None  # the chat tool call index of an open function item
        self._finish: object = None
        self._raw_usage: dict[str, Any] = {}

    def _emit(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return encode(orjson.dumps(payload), event=kind)

    def _on(self, event: Event) -> bytes:
        if event.data.strip() == b"[DONE]":
            return self._end()
        data = oa.event_json(event)
        if data.get("error"):
            self.error = str(oa.obj(data["error"]).get("message") or "the provider failed")
            return stream_error_event(self.error) if self._response is not None else b""
        out = [self._start(data)]
        if isinstance(data.get("usage"), dict):
            self._raw_usage = data["usage"]
            if self._inner is None:
                self.usage = Usage(
                    oa.count(self._raw_usage.get("prompt_tokens")),
                    oa.count(self._raw_usage.get("completion_tokens")),
                )
        finish = self._deltas(data, out)
        if finish:
            self._finish = finish
        return b"".join(out)

    def _start(self, data: dict[str, Any]) -> bytes:
        if self._response is not None:
            return b""
        ident = ra.response_id(data.get("id"))
        model = str(data.get("model") or self._model)
        self._response = ra.envelope(self._call, ident, model, "in_progress")
        return self._emit("response.created", response=self._response) + self._emit(
            "response.in_progress", response=self._response
        )

    def _output(self) -> list[dict[str, Any]]:
        assert self._response is not None
        output: list[dict[str, Any]] = self._response["output"]
        return output

    def _open(self, item: dict[str, Any]) -> bytes:
        closing = self._close()
        self._item = item
        self._output().append(item)
        added = {**item, "content": []} if item["type"] == "message" else item
        return closing + self._emit(
            "response.output_item.added", output_index=len(self._output()) - 1, item=added
        )

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        opening = b""
        if self._item is None or self._item["type"] != "message":
            ident = "msg_" + self._ident() + f"_{len(self._output())}"
            item = ra.message_item(ident, "", "in_progress")
            item["content"] = [ra.text_part("")]
            opening = self._open(item) + self._emit(
                "response.content_part.added",
                item_id=ident,
                output_index=len(self._output()) - 1,
                content_index=0,
                part=ra.text_part(""),
            )
        assert self._item is not None
        self._item["content"][0]["text"] += text
        return opening + self._emit(
            "response.output_text.delta",
            item_id=self._item["id"],
            output_index=len(self._output()) - 1,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _tool(self, call: dict[str, Any]) -> bytes:
        function = oa.obj(call.get("function"))
        index = call.get("index", 0)
        opening = b""
        if (
            self._item is None
            or self._item["type"] != "function_call"
            or (index != self._tool_index)
        ):
            self._tool_index = index
            call_id = str(call.get("id") or f"call_{self._ident()}_{len(self._output())}")
            item = ra.function_item(
                f"fc_{call_id}", call_id, str(function.get("name") or ""), "", "in_progress"
            )
            opening = self._open(item)
        assert self._item is not None
        fragment = function.get("arguments")
        if not isinstance(fragment, str) or not fragment:
            return opening
        self._item["arguments"] += fragment
        return opening + self._emit(
            "response.function_call_arguments.delta",
            item_id=self._item["id"],
            output_index=len(self._output()) - 1,
            delta=fragment,
        )

    def _close(self) -> bytes:
        item, self._item = self._item, None
        if item is None:
            return b""
        index = len(self._output()) - 1
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            return b"".join(
                (
                    self._emit(
                        "response.output_text.done", **common, text=part["text"], logprobs=[]
                    ),
                    self._emit("response.content_part.done", **common, part=part),
                    self._emit("response.output_item.done", output_index=index, item=item),
                )
            )
        return self._emit(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=index,
            name=item["name"],
            arguments=item["arguments"],
        ) + self._emit("response.output_item.done", output_index=index, item=item)

    def _ident(self) -> str:
        assert self._response is not None
        return str(self._response["id"]).removeprefix("resp_")

    def _end(self) -> bytes:
        if self.done:
            return b""
        self.done = True
        opening = self._start({})
        closing = self._close()
        assert self._response is not None
        response = ra.finish(self._response, self._finish)
        if self._raw_usage:
            response["usage"] = ra.chat_usage(self._raw_usage)
        else:
            known = self.usage
            response["usage"] = ra.usage(known.prompt_tokens or 0, known.completion_tokens or 0)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return opening + closing + self._emit(kind, response=response)
