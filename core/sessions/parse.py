"""A common-topic event as the sessionizer reads it: who, which session, and when (event time)."""

from __future__ import annotations

from typing import Any

from core.lake.records import epoch_ms
from core.sessions.model import SessionEvent


class Unusable(ValueError):
    """The event cannot be placed in a session; the message names the field."""


def event_time(event: dict[str, Any], skew_ms: int) -> int:
    """``client_ts`` — the device's clock, the only one that orders a user's own actions — unless it
    is missing or further than ``skew_ms`` from ``server_ts`` (a device clock that is off would
    otherwise move the partition's watermark and close everyone's sessions); then ``server_ts``."""
    client, server = epoch_ms(event.get("client_ts")), epoch_ms(event.get("server_ts"))
    if client is not None and (server is None or abs(client - server) <= skew_ms):
        return client
    if server is None:
        raise Unusable("neither client_ts nor server_ts is an epoch-milliseconds integer")
    return server


def session_event(offset: int, event: dict[str, Any], skew_ms: int) -> SessionEvent:
    user = event.get("user_id")
    if not isinstance(user, str) or not user:
        raise Unusable("user_id is missing or not a string")
    session = event.get("session_id")
    name = event.get("event_name")
    platform, version = event.get("platform"), event.get("app_version")
    return SessionEvent(
        offset,
        event_time(event, skew_ms),
        user,
        session if isinstance(session, str) and session else None,
        name if isinstance(name, str) else "",
        platform if isinstance(platform, str) and platform else None,  # "" says as little as null
        version if isinstance(version, str) and version else None,
    )
