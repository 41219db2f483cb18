"""Audio uploads: ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``.

The body is multipart/form-data: its file at most ``server.max_upload_size`` bytes (413
before a byte is read when ``Content-Length`` says more than that and the room of the
fields and framing, ``FORM_FRAMING``; 413 as soon as the file grows past it).
The form is read part by part (aiohttp's multipart reader), so ``model`` may sit
before or after ``file``; the file is spooled (memory up to ``SPOOL_IN_MEMORY``, then
a temporary file in the system's temp dir, ``TMPDIR``), never held whole in memory,
and streamed from there to the provider. Then the same itinerary as every surface
(``openai.serve_call``), accounted under the endpoint ``audio``; never cached.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import IO

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from llmgw.api.calls import check_model
from llmgw.api.extensions import extract
from llmgw.api.openai import serve_call
from llmgw.auth.keys import identify
from llmgw.core import Call, Endpoint, Upload
from llmgw.errors import InvalidRequest, RequestTimedOut, RequestTooLarge, UnsupportedEncoding
from llmgw.server.appkeys import CONTEXT, KEYRING, STORE
from llmgw.server.body import BODY_IDLE_TIMEOUT

SPOOL_IN_MEMORY = 1024 * 1024  # an upload past this goes to a temporary file
MAX_FIELD = 64 * 1024  # one text field (a prompt is the longest OpenAI takes)
MAX_FIELDS = 32
# The limit counts the file's bytes (as OpenAI's 25 MB does); a declared Content-Length
# may pass it by what the fields and the form's framing may take.
FORM_FRAMING = MAX_FIELDS * (MAX_FIELD + 1024)
_READ = 64 * 1024


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await handle(request, "audio_transcriptions")


async def translations(request: web.Request) -> web.StreamResponse:
    return await handle(request, "audio_translations")


async def handle(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    ctx = request[CONTEXT]
    ctx.endpoint = "audio"  # limits.endpoints.audio, and the metrics' endpoint label
    runtime = request.app[STORE].current
    config = runtime.config
    principal = await identify(request.headers, config.auth, request.app[KEYRING])
    ctx.key = principal.name
    limit = config.server.max_upload_size
    _check_head(request, limit)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        fields, upload = await _read_form(request, spool, limit)
        model = fields.get("model", "").strip()
        if not model:
            raise InvalidRequest("'model' is a required form field", param="model")
        check_model(model)
        if upload is None:
            raise InvalidRequest("'file' is a required form field (the audio)", param="file")
        extensions, _ = extract({}, request.headers)
        call = Call(endpoint, model, False, dict(fields), b"", extensions=extensions, upload=upload)
        return await serve_call(request, runtime, principal, call)


def _check_head(request: web.Request, limit: int) -> None:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedEncoding("Content-Encoding is not supported: send the upload as is")
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            "The request body must be multipart/form-data with 'file' and 'model' fields"
        )
    declared = request.content_length
    if declared is not None and declared > limit + FORM_FRAMING:
        raise RequestTooLarge(
            f"The upload is {declared} bytes; the limit is {limit} bytes (server.max_upload_size)"
        )


async def _read_form(
    request: web.Request, spool: IO[bytes], limit: int
) -> tuple[dict[str, str], Upload | None]:
    """The form's text fields, and its file spooled into ``spool``."""
    fields: dict[str, str] = {}
    upload: Upload | None = None
    try:
        async with asyncio.timeout(BODY_IDLE_TIMEOUT):
            reader = await request.multipart()
        for _ in range(MAX_FIELDS + 1):
            async with asyncio.timeout(BODY_IDLE_TIMEOUT):
                part = await reader.next()
            if part is None:
                return fields, upload
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("A nested multipart part is not supported")
            name = part.name or ""
            if name == "file" and part.filename is not None:
                if upload is not None:
                    raise InvalidRequest("Only one 'file' may be uploaded", param="file")
                size = await _spool(part, spool, limit)
                kind = part.headers.get("Content-Type", "application/octet-stream")
                upload = Upload(spool, size, _printable(part.filename), _printable(kind))
                continue
            fields[name] = await _field(part, name)
    except (ValueError, AssertionError) as exc:  # aiohttp's words for a broken form
        raise InvalidRequest(f"The multipart body is not valid: {exc}") from None
    except HttpProcessingError:  # a part's headers that do not parse
        raise InvalidRequest("The multipart body is not valid: a part's headers") from None
    except TimeoutError:
        raise RequestTimedOut(
            f"The upload stopped arriving for {BODY_IDLE_TIMEOUT:g}s before it was complete"
        ) from None
    raise InvalidRequest(f"The form has more than {MAX_FIELDS} fields")


async def _spool(part: BodyPartReader, spool: IO[bytes], room: int) -> int:
    """The file part written to ``spool`` a chunk at a time; 413 past ``room`` bytes."""
    size = 0
    while True:
        async with asyncio.timeout(BODY_IDLE_TIMEOUT):
            chunk = await part.read_chunk(_READ)
        if not chunk:
            spool.flush()
            return size
        size += len(chunk)
        if size > room:
            raise RequestTooLarge(
                f"The uploaded file is over the limit of {room} bytes (server.max_upload_size)"
            )
        spool.write(chunk)


async def _field(part: BodyPartReader, name: str) -> str:
    if not name:
        raise InvalidRequest("A form field has no name")
    data = bytearray()
    while True:
        async with asyncio.timeout(BODY_IDLE_TIMEOUT):
            chunk = await part.read_chunk(_READ)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_FIELD:
            raise InvalidRequest(f"The form field '{name[:40]}' is over {MAX_FIELD} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidRequest(f"The form field '{name[:40]}' is not UTF-8 text") from None


def _printable(value: str) -> str:
    """A filename or content type as it may go into the provider's form headers."""
    kept = "".join(c for c in value if c.isprintable() and c not in "\r\n")
    return kept[:255] or "upload"
