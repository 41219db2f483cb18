"""Translators between wire formats: pure functions and per-stream state, no I/O and
no aiohttp, tested on recorded JSON and SSE.

One package per pair of formats and direction (client side first): ``chat_anthropic``
(OpenAI chat → Anthropic Messages), ``messages_chat`` (Anthropic Messages → OpenAI
chat), ``chat_gemini`` (OpenAI chat and embeddings → Gemini). Below them, shared by
all: ``openai_chat`` and ``anthropic_messages`` (format helpers), ``params`` (each
parameter's fate), ``wire`` (typed wire formats). Above them, ``chain`` composes a
call's stages for any provider type; ``simple`` shapes chat answers for the simple
prompt APIs.
"""
