"""CORS for browsers posting to the collector: an origin allowlist, preflight answers.

A request carrying an ``Origin`` outside the allowlist is refused (403) — for the preflight and for
the POST itself, since ``navigator.sendBeacon``'s text/plain POST is sent without a preflight.
Requests without ``Origin`` (servers, mobile apps) are not browsers' and pass.
"""

from __future__ import annotations

from collections.abc import Sequence

ALLOW_METHODS = "POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Highway-Key"
MAX_AGE_S = 600


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
