"""Translators between wire formats: pure functions and per-stream state, no I/O and
no aiohttp, tested on recorded JSON and SSE."""
