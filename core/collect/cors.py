"""CORS for browsers posting to the collector: an origin allowlist, preflight answers.

A request carrying an ``Origin`` outside the allowlist is refused (403) — for the preflight and for
the POST itself, since ``navigator.sendBeacon``'s text/plain POST is sent without a preflight.
Requests without ``Origin`` (servers, mobile apps) are not browsers' and pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

ALLOW_METHODS = "POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Highway-Key"
MAX_AGE_S = 600
_ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s]+$")


def parse_origins(value: Any) -> Any:
    """``collector_cors_origins`` from a list or comma-separated text; each entry ``*`` or exactly
    what browsers send as ``Origin`` (``scheme://host[:port]``: no path, no trailing slash)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        for origin in value:
            if origin != "*" and not (isinstance(origin, str) and _ORIGIN_RE.match(origin)):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port] without a path, or *")
    return value


def origin_allowed(origin: str | None, allowlist: Sequence[str]) -> bool:
    if origin is None:
        return True
    return "*" in allowlist or origin in allowlist


def preflight_headers(origin: str) -> dict[str, str]:
    """Headers of the 204 answering an allowed origin's OPTIONS."""
    return {
        **response_headers(origin),
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(MAX_AGE_S),
    }


def response_headers(origin: str | None) -> dict[str, str]:
    """CORS headers of an answer to an allowed request (none without ``Origin``)."""
    if origin is None:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": "X-Request-Id, Retry-After",
        "Vary": "Origin",
    }
