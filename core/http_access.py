"""Who may call which HTTP endpoint of a worker (pure: the web middleware asks, this decides).

* public paths (``/health``, ``/ready``, the collector's own key-checked routes, and ``/metrics``
  unless ``metrics_require_token``) answer anyone;
* user lookups always need the bearer token — without one configured they are disabled (403);
* everything else needs the token when one is configured. A worker binding a non-loopback address
  must have one (:func:`token_problem`), so an open API is only ever reachable from the host itself.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection
from dataclasses import dataclass

USER_LOOKUP_PREFIX = "/api/v1/users/"
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class Denial:
    status: int
    error: str


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs; a wildcard (``0.0.0.0``, ``::``, ``""``) or a name is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_problem(http_host: str, has_token: bool) -> str | None:
    """Why the worker must not start (no token on a non-loopback address), or None."""
    if has_token or is_loopback(http_host):
        return None
    return (
        f"api_token (env HIGHWAY_API_TOKEN, or api_token_file) is required: http_host {http_host!r} "
        "is not a loopback address, so the HTTP API would be open to the network (docs/security.md)"
    )


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AccessPolicy:
    def __init__(self, token: str | None, public_paths: Collection[str], metrics_require_token: bool) -> None:
        self._token = token.encode() if token else None
        self._public = frozenset(public_paths) | (frozenset() if metrics_require_token else {METRICS_PATH})

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def _authorized(self, authorization: str | None) -> bool:
        given = bearer(authorization)
        # compare_digest: the time taken does not tell how much of a guess was right.
        return (
            self._token is not None and given is not None and hmac.compare_digest(given.encode(), self._token)
        )

    def check(self, route: str, authorization: str | None) -> Denial | None:
        """None when the request may go on; ``route`` is the matched route pattern (or the path)."""
        if route.startswith(USER_LOOKUP_PREFIX):
            if self._token is None:
                return Denial(
                    403,
                    "user lookups are disabled: they need an API token (set HIGHWAY_API_TOKEN "
                    "or api_token_file, then send Authorization: Bearer <token>)",
                )
        elif route in self._public or self._token is None:
            return None
        if self._authorized(authorization):
            return None
        return Denial(401, "missing or wrong API token: send Authorization: Bearer <token>")
