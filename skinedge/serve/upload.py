"""An uploaded photo, from an HTTP request body into bytes in memory: limits, content types, multipart.

Nothing here touches the filesystem: the body is read into memory, a multipart form is split in
memory, and the part's filename is never used. Every refusal is a :class:`RequestError` carrying the
HTTP status and a one-line reason for the client.
"""

from __future__ import annotations

import time
from email.message import Message
from typing import BinaryIO

from skinedge.errors import SkinedgeError

#: Content types taken as a raw image body (the decoder sniffs the actual format from the bytes).
RAW_TYPES = ("application/octet-stream",)
MULTIPART_TYPE = "multipart/form-data"
#: Multipart field names tried, in order, when no part carries a filename.
FILE_FIELDS = ("image", "file", "photo")
_CHUNK = 64 * 1024


class RequestError(SkinedgeError):
    """A request the server refuses: ``status`` is the HTTP status, ``error`` its kind, ``reason`` the client's
    message (``source`` is ``"<request>"``)."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__("<request>", reason)
        self.args = (f"{status} {error}: {reason}",)  # str(): the status line a log shows
        self.status = status
        self.error = error


def media_type(content_type: str | None) -> tuple[str, Message]:
    """``(lower-case type/subtype, parsed header)`` of a Content-Type value ('' when absent)."""
    header = Message()
    header["content-type"] = content_type or ""
    return (header.get_content_type() if content_type else ""), header


def declared_length(content_length: str | None, transfer_encoding: str | None, limit: int) -> int:
    """The body size a request announces, checked against ``limit`` before a byte of it is read."""
    if transfer_encoding and transfer_encoding.strip().lower() != "identity":
        raise RequestError(411, "LengthRequired", "send the body with a Content-Length (chunked uploads are refused)")
    if content_length is None:
        raise RequestError(411, "LengthRequired", "a Content-Length header is required")
    text = content_length.strip()
    if not text.isdigit():
        raise RequestError(400, "BadRequest", f"invalid Content-Length {content_length[:40]!r}")
    length = int(text)
    if length > limit:
        raise RequestError(413, "PayloadTooLarge", f"body is {length} bytes, above the limit of {limit} bytes")
    if length == 0:
        raise RequestError(400, "BadRequest", "empty body: send the photo's bytes or a multipart form with a file")
    return length


def read_body(stream: BinaryIO, length: int, deadline_s: float) -> bytes:
    """Read exactly ``length`` bytes; a client slower than ``deadline_s`` in total gets 408.

    The socket's own timeout bounds each read; the deadline bounds a client that trickles bytes
    just fast enough to dodge it.
    """
    chunks: list[bytes] = []
    remaining = length
    end = time.monotonic() + deadline_s
    while remaining:
        if time.monotonic() > end:
            raise RequestError(408, "RequestTimeout", f"body not received within {deadline_s:g} s")
        try:
            chunk = _read_some(stream, min(_CHUNK, remaining))
        except TimeoutError:
            raise RequestError(408, "RequestTimeout", "the client stopped sending the body") from None
        if not chunk:
            raise ConnectionAbortedError(f"client closed the connection with {remaining} of {length} bytes unsent")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_some(stream: BinaryIO, n: int) -> bytes:
    # read1: what one socket read brings (a buffered read(n) would wait for all n bytes, past the deadline).
    read1 = getattr(stream, "read1", None)
    return read1(n) if read1 is not None else stream.read(n)


def discard_body(stream: BinaryIO, length: int, deadline_s: float) -> None:
    """Read and drop up to ``length`` bytes within ``deadline_s``, so that a refusal sent before the body
    was read reaches the client instead of a connection reset. Gives up quietly."""
    remaining = length
    end = time.monotonic() + deadline_s
    try:
        while remaining and time.monotonic() < end:
            chunk = _read_some(stream, min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
    except OSError:
        return


def image_bytes(body: bytes, content_type: str | None) -> bytes:
    """The photo inside a request body: the body itself (``image/*``, octet-stream or no type),
    or the file part of a ``multipart/form-data`` form."""
    kind, header = media_type(content_type)
    if kind == MULTIPART_TYPE:
        return _file_part(body, header.get_param("boundary"))
    if not kind or kind in RAW_TYPES or kind.startswith("image/"):
        return body
    raise RequestError(
        415, "UnsupportedMediaType",
        f"content type {kind!r} is not accepted: send image/* (the photo's bytes), application/octet-stream, "
        "or multipart/form-data with the photo in a field named 'image'",
    )


def _file_part(body: bytes, boundary: object) -> bytes:
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise RequestError(400, "BadRequest", "multipart/form-data without a valid boundary parameter")
    parts = split_multipart(body, boundary.encode("latin-1", "replace"))
    named: dict[str, bytes] = {}
    for headers, content in parts:
        disposition = Message()
        disposition["content-disposition"] = headers.get("content-disposition", "")
        if disposition.get_filename() is not None:
            return content  # the first file in the form; its name is never used
        name = disposition.get_param("name", header="content-disposition")
        if isinstance(name, str):
            named.setdefault(name, content)
    for field in FILE_FIELDS:
        if field in named:
            return named[field]
    raise RequestError(400, "BadRequest", "the multipart form holds no file (send the photo in a field named 'image')")


def split_multipart(body: bytes, boundary: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a ``multipart/form-data`` body (RFC 7578) into ``(headers, content)`` parts, in memory.

    Header names are lower-cased. A body without its closing delimiter (truncated) is refused.
    """
    delimiter = b"\r\n--" + boundary
    sections = (b"\r\n" + body).split(delimiter)  # sections[0] is the preamble
    parts: list[tuple[dict[str, str], bytes]] = []
    for section in sections[1:]:
        if section.startswith(b"--"):
            return parts  # the closing delimiter; anything after it is epilogue
        line_end = section.find(b"\r\n")
        if line_end < 0 or section[:line_end].strip(b" \t"):
            break  # a delimiter must end its line
        head_end = section.find(b"\r\n\r\n", line_end)
        if head_end < 0:
            break
        block = section[line_end + 2:head_end]  # empty when the part has no headers
        headers: dict[str, str] = {}
        for line in block.split(b"\r\n") if block else ():
            name, sep, value = line.decode("utf-8", "replace").partition(":")
            if not sep:
                raise RequestError(400, "BadRequest", "malformed multipart part header")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, section[head_end + 4:]))
    raise RequestError(400, "BadRequest", "malformed or truncated multipart body (no closing boundary)")
