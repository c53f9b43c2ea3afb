"""Cheap per-event checks and the collector's stamps; the router keeps the full rules.

An event is accepted when it is an object with a non-empty string ``event_name``, a ``user_id``
(string or integer: the Kafka key) and a non-empty string ``event_id``. A missing ``event_id`` is
rejected, never generated: a client's retry of the same event must carry the same id, so that
duplicates stay detectable downstream. Accepted events get the trusted ``server_ts`` (overwriting
the client's), the request's ``request_id``, and ``lane`` — the lane of the request's key — when the
event does not name one (the router requires it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.collect.body import Unparsable
from core.errors import SchemaError


@dataclass
class Batch:
    """One request's events: accepted ones as (key, encoded value) in order, and rejected ones."""

    request_id: str
    accepted: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        return {"accepted": len(self.accepted), "rejected": self.rejected, "request_id": self.request_id}


def problem(event: Any) -> tuple[str, str] | None:
    """``(field, error)`` of the first failed check, or None for an acceptable event."""
    if isinstance(event, Unparsable):
        return "$", event.error
    if not isinstance(event, dict):
        return "$", f"an event must be a JSON object, not {type(event).__name__}"
    name = event.get("event_name")
    if not isinstance(name, str) or not name.strip():
        return "event_name", "must be a non-empty string"
    user = event.get("user_id")
    if isinstance(user, bool) or not isinstance(user, str | int) or user == "":
        return "user_id", "must be a non-empty string or an integer"
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not event_id.strip():
        return "event_id", "must be a non-empty string (the client's id keeps retries detectable)"
    return None


def screen(
    items: list[Any],
    request_id: str,
    server_ts: int,
    encode: Callable[[dict[str, Any]], bytes],
    lane: str | None = None,
) -> Batch:
    """Check every item; stamp, key by ``user_id`` and ``encode`` the acceptable ones.

    ``encode`` is the topic's wire codec; an event it refuses (e.g. outside the Avro envelope) is
    rejected like any other, naming the codec's complaint.
    """
    batch = Batch(request_id)
    rejected = batch.rejected
    for index, event in enumerate(items):
        found = problem(event)
        if found is None:
            event["server_ts"] = server_ts
            event["request_id"] = request_id
            if lane is not None and "lane" not in event:
                event["lane"] = lane
            try:
                batch.accepted.append((str(event["user_id"]).encode(), encode(event)))
                continue
            except (ValueError, TypeError, SchemaError) as exc:
                where = exc.field if isinstance(exc, SchemaError) and exc.field else "$"
                found = (where, f"cannot be encoded for the topic: {exc}")
        rejected.append({"index": index, "field": found[0], "error": found[1]})
    return batch


def reject_reason(rejection: dict[str, Any]) -> str:
    """The metric label of a rejection: the field it names (``$``: not an object / not JSON)."""
    return "not_object" if rejection["field"] == "$" else f"bad_{rejection['field']}"
