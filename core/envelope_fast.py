"""The router's fast path for JSON events: typed decoding and validation in C (msgspec).

:func:`decode_fast` accepts only the common case — every attribute present with its exact type,
``properties`` absent or a flat object of scalars — and returns None for everything else, so that
the caller falls back to ``orjson`` + :func:`core.envelope.validate_event`, which normalises what it
can (integer ``user_id``, absent ``server_ts``, nested properties) and names the reason of what it
cannot. Whatever the fast path accepts, the fallback accepts too, with the same fields and values:
unit tests hold the two in agreement over good, bad and hostile events.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from core.envelope import COMMON_FIELDS, LONG_MAX, LONG_MIN, UUID_PATTERN

Long = Annotated[int, msgspec.Meta(ge=LONG_MIN, le=LONG_MAX)]
Scalar = None | bool | Long | float | str
# msgspec matches patterns with re.search: anchor both ends (\Z, because $ also matches before "\n").
Uuid = Annotated[str, msgspec.Meta(pattern=rf"\A{UUID_PATTERN}\Z")]


class FastEnvelope(msgspec.Struct):
    """The envelope as the fast path decodes it; field order is the schema's (projection relies on it)."""

    event_name: str
    event_id: Uuid
    user_id: str
    session_id: str
    lane: str
    platform: str
    app_version: str
    device_id: str
    client_ts: Long
    server_ts: Long
    properties: dict[str, Scalar] = msgspec.field(default_factory=dict)


_decoder = msgspec.json.Decoder(FastEnvelope)
_errors = (msgspec.DecodeError, msgspec.ValidationError)


def decode_fast(raw: bytes) -> FastEnvelope | None:
    """``raw`` decoded when it is a plain valid event, else None (take the validating path)."""
    try:
        return _decoder.decode(raw)
    except _errors:
        return None


def projection_of(envelope: FastEnvelope) -> dict[str, Any]:
    """The common attributes as :func:`core.envelope.common_projection` builds them from a dict."""
    return dict(zip(COMMON_FIELDS, msgspec.structs.astuple(envelope), strict=False))
