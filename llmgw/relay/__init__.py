"""Relay a provider's successful response to the client.

JSON bodies and bytes that are not events are relayed whole or as they come
(``whole``). Event streams in the client's format are relayed byte for byte
(``passthrough``); streams in another format are rewritten piece by piece by the call's
translator (``translated``). After the first byte, a failure ends the stream with an
SSE error event. A stream is whole once its end event (``data: [DONE]``, or
``message_stop`` on the Anthropic surface) went out: a client that hangs up after it
(the openai SDK does, if the provider's end of body lags) has its answer, and the
answer counts as complete (``ends``). A client that reads nothing for
``server.write_timeout`` (``sink.py``) has its response ended (``client_stalled``,
499): the provider's slot and the limits go free with it. Everything goes to an
``Answer`` (``answer.py``): the client's, or the cache's recording of it; which one is
not the relay's business.
"""

from llmgw.errors import stream_error_event
from llmgw.relay.ends import delivered, saw_end
from llmgw.relay.passthrough import stream
from llmgw.relay.translated import translated_stream
from llmgw.relay.whole import binary, is_binary, is_event_stream, json_response

__all__ = [
    "binary",
    "delivered",
    "is_binary",
    "is_event_stream",
    "json_response",
    "saw_end",
    "stream",
    "stream_error_event",
    "translated_stream",
]
