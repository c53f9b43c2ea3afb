"""Per-lane API keys of the collector, stored as SHA-256 hex digests.

A key is a random string handed to one client; the settings hold only its digest
(``highway collector hash-key``), so a leaked configuration does not leak keys. A key belongs to
exactly one lane. Presented keys are compared with :func:`hmac.compare_digest` against every digest,
so the answer's timing does not depend on which digest (if any) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The digest the settings store for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(value: Any) -> dict[str, list[str]]:
    """``collector_api_keys`` from a mapping, a JSON object or ``lane:digest,lane:digest`` text.

    Digests must be 64 hex characters (any case, stored lower) and each belongs to one lane;
    anything else raises ValueError naming the lane and the offending value.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"not a JSON object: {exc}") from exc
        else:
            value = _pairs(text)
    if not isinstance(value, Mapping):
        raise ValueError("must map each lane to a list of SHA-256 hex digests")
    keys: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for lane, digests in value.items():
        if isinstance(digests, str):
            digests = [digests]
        if not isinstance(digests, list):
            raise ValueError(f"lane {lane!r}: expected a list of digests")
        for digest in digests:
            normal = str(digest).strip().lower()
            if not _DIGEST_RE.match(normal):
                raise ValueError(
                    f"lane {lane!r}: {str(digest)[:12]!r}… is not a SHA-256 hex digest (64 hex characters; "
                    "store `highway collector hash-key KEY`, never the key itself)"
                )
            if owner.setdefault(normal, str(lane)) != lane:
                raise ValueError(f"a key digest is listed for lanes {owner[normal]!r} and {lane!r}")
            keys.setdefault(str(lane), []).append(normal)
    return keys


def _pairs(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        lane, sep, digest = part.partition(":")
        if not sep:
            raise ValueError(f"{part[:12]!r}…: expected lane:digest")
        keys.setdefault(lane.strip(), []).append(digest.strip())
    return keys


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer``, ``X-Highway-Key`` or ``?key=``
    (``navigator.sendBeacon`` cannot set headers)."""
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("X-Highway-Key") or query.get("key") or None


@dataclass(frozen=True)
class AuthResult:
    lane: str | None
    error: str | None = None


class KeyRing:
    """Which lane a presented key belongs to."""

    def __init__(self, keys: Mapping[str, list[str]]) -> None:
        self._entries = [(lane, digest.encode()) for lane, digests in keys.items() for digest in digests]

    def lane_of(self, key: str) -> str | None:
        digest = hash_key(key).encode()
        found = None
        for lane, known in self._entries:  # no early exit: timing says nothing about the match
            if hmac.compare_digest(known, digest):
                found = lane
        return found

    def authorize(self, key: str | None, lane: str | None) -> AuthResult:
        """The lane a request writes to, or the reason for a 401."""
        if not key:
            return AuthResult(None, "missing API key (Authorization: Bearer, X-Highway-Key or ?key=)")
        owner = self.lane_of(key)
        if owner is None:
            return AuthResult(None, "unknown API key")
        if lane and lane != owner:
            return AuthResult(None, f"the API key is not valid for lane {lane!r}")
        return AuthResult(owner)
