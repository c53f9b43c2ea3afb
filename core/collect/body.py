"""A collector request body → the event objects it holds.

Bodies are a JSON array of events, NDJSON (one event per line) or a single JSON object, optionally
gzip-compressed. Decompression stops as soon as the output passes the size limit, so a small
compressed body that would inflate to gigabytes (a zip bomb) costs at most ``max_bytes`` of memory.
The whole body is parsed by one ``orjson.loads`` when it is a JSON document; an NDJSON line that does
not parse is rejected on its own (the other lines still count).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

CONTENT_TYPES = frozenset({"application/json", "application/x-ndjson", "text/plain", ""})
_NDJSON_TYPES = frozenset({"application/x-ndjson"})


class BodyError(Exception):
    """A request body that is refused as a whole: ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Unparsable:
    """An NDJSON line that is not JSON, kept at its index so the answer can name it."""

    error: str


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_headers(
    content_type: str | None, content_encoding: str | None, length: int | None, limit: int
) -> None:
    """Refuse before reading: unsupported type (415) or encoding (415), declared size over limit (413)."""
    if media_type(content_type) not in CONTENT_TYPES:
        raise BodyError(415, f"content type {media_type(content_type)!r} is not accepted")
    if (content_encoding or "identity").strip().lower() not in ("identity", "gzip", "x-gzip"):
        raise BodyError(415, f"content encoding {content_encoding!r} is not accepted (gzip or none)")
    if length is not None and length > limit:
        raise BodyError(413, f"body of {length} bytes is over the limit of {limit}")


def gunzip_bounded(data: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip body, refusing (413) as soon as the output would pass ``max_bytes``."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(data, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise BodyError(400, f"body is not valid gzip: {exc}") from exc
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise BodyError(413, f"decompressed body is over the limit of {max_bytes} bytes")
        if not inflater.eof:
            raise BodyError(400, "gzip body is truncated")
        data = inflater.unused_data  # concatenated gzip members are one stream (RFC 1952)
    return bytes(out)


def decode(raw: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    if len(raw) > max_bytes:
        raise BodyError(413, f"body is over the limit of {max_bytes} bytes")
    if (content_encoding or "").strip().lower() in ("gzip", "x-gzip"):
        return gunzip_bounded(raw, max_bytes)
    return raw


def parse(body: bytes, content_type: str | None) -> list[Any]:
    """The events of a body, in order; an NDJSON line that does not parse is an :class:`Unparsable`."""
    text = body.strip()
    if not text:
        raise BodyError(400, "body is empty")
    if media_type(content_type) not in _NDJSON_TYPES:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if text[:1] != b"{" or b"\n" not in text:
                raise BodyError(400, f"body is not valid JSON: {exc}") from exc
        else:
            return document if isinstance(document, list) else [document]
    return [_line(line) for line in text.split(b"\n") if line.strip()]


def _line(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Unparsable(f"line is not valid JSON: {exc}")
