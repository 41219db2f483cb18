"""A multipart/form-data request body (RFC 7578) made of text fields and one uploaded
file, sent as it is read: the file comes from its spool (disk past a small size) a
chunk at a time, and the whole length is known before the first byte, so the request
carries ``Content-Length``. Each ``chunks()`` starts again from the file's beginning
(a retried or fallen-back attempt sends the same bytes); each read seeks to its own
offset first, so two attempts at once (a hedge) do not disturb each other.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping

from llmgw.core import Upload

CHUNK = 256 * 1024


def _quoted(value: str) -> str:
    """A header parameter value in quotes, as browsers write them (RFC 7578 §4.2)."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """Fields then the file, under a random boundary."""

    __slots__ = ("_epilogue", "_preamble", "boundary", "fields", "length", "upload")

    def __init__(self, fields: Mapping[str, str], upload: Upload, file_field: str = "file"):
        self.boundary = "llmgw-" + secrets.token_hex(16)
        self.fields = dict(fields)
        self.upload = upload
        dash = f"--{self.boundary}\r\n"
        parts = [
            f'{dash}Content-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        parts.append(
            f'{dash}Content-Disposition: form-data; name="{_quoted(file_field)}"; '
            f'filename="{_quoted(upload.filename)}"\r\n'
            f"Content-Type: {upload.content_type}\r\n\r\n"
        )
        self._preamble = "".join(parts).encode()
        self._epilogue = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = len(self._preamble) + upload.size + len(self._epilogue)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._preamble
        file, offset, left = self.upload.file, 0, self.upload.size
        while left > 0:
            file.seek(offset)  # a local spool: reads from the page cache, no await between
            chunk = file.read(min(CHUNK, left))
            if not chunk:
                raise OSError("the spooled upload ended before its size")
            offset += len(chunk)
            left -= len(chunk)
            yield chunk
        yield self._epilogue
