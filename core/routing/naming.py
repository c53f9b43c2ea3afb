"""Event names are untrusted input: validate them and map them to legal, lane-confined topic names.

``topic_name_for(event_name)`` returns the *name part* of a per-event topic; the full topic is
``settings.event_topic(lane, topic_name_for(event_name))`` (or :func:`event_topic_for`).

The mapping is deterministic and injective (two different names never share a topic):

* A *canonical* name — ``[a-z0-9_]`` words joined by single hyphens, at most
  :data:`MAX_CANONICAL_CHARS` — maps to itself (``contest_join`` → ``contest_join``).
* Any other valid name maps lossily to a readable approximation (ASCII letters lower-cased, every
  other character ``_``; no hyphens) followed by ``--`` and 16 hex digits of its SHA-256
  (``Contest.Join`` → ``contest_join--5c0f…``). Canonical names never contain ``--``, so a canonical
  and a mapped name cannot collide; two mapped names collide only on a 64-bit hash collision.

Safe names never contain ``.``, so no two per-event topics collide in Kafka's metric names (where
``.`` and ``_`` are the same) and no name can form ``..`` or climb out of its lane's prefix. The
original name travels in the ``event_name`` record header and in the unchanged value.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

from core.errors import SchemaError
from core.settings import Settings

INVALID_EVENT_NAME = "invalid_event_name"
MAX_EVENT_NAME_CHARS = 200
MAX_CANONICAL_CHARS = 120
MAX_TOPIC_CHARS = 249
_APPROX_CHARS = 64
_HASH_HEX = 16
_CANONICAL = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*")
_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]+")
_MAPPED = re.compile(r"[a-z0-9_]{1,64}--[0-9a-f]{16}")
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
# Cc control, Cf format (bidi overrides, zero-width joiners), Cs lone surrogates, line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _invalid(detail: str) -> SchemaError:
    return SchemaError(INVALID_EVENT_NAME, "event_name", detail)


def validate_event_name(name: str) -> None:
    """Raise ``SchemaError(invalid_event_name, "event_name", detail)`` unless ``name`` is acceptable."""
    if not name:
        raise _invalid("event name is empty")
    if len(name) > MAX_EVENT_NAME_CHARS:
        raise _invalid(f"event name has {len(name)} characters, more than {MAX_EVENT_NAME_CHARS}")
    if not name.strip():
        raise _invalid("event name is only whitespace")
    if name.startswith("."):
        raise _invalid("event name starts with '.'")
    if ".." in name or "/" in name or "\\" in name:
        raise _invalid("event name contains a path element ('..', '/' or '\\')")
    if not name.isascii() or not name.isprintable():
        for position, char in enumerate(name):
            if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
                raise _invalid(f"event name has control/format character U+{ord(char):04X} at {position}")


@lru_cache(maxsize=65_536)
def topic_name_for(event_name: str) -> str:
    """The topic-safe name part for a valid event name; raises SchemaError for an invalid one."""
    validate_event_name(event_name)
    if len(event_name) <= MAX_CANONICAL_CHARS and _CANONICAL.fullmatch(event_name):
        return event_name
    approx = "".join(
        char if char in _KEEP else (char.lower() if "A" <= char <= "Z" else "_")
        for char in event_name[:_APPROX_CHARS]
    )
    digest = hashlib.sha256(event_name.encode("utf-8")).hexdigest()[:_HASH_HEX]
    return f"{approx}--{digest}"


def is_topic_safe_name(name: str) -> bool:
    """True for exactly the names :func:`topic_name_for` can return (canonical or mapped): the only
    per-event table names the lake accepts, so none is ``.``, ``..`` or holds a path separator."""
    canonical = len(name) <= MAX_CANONICAL_CHARS and _CANONICAL.fullmatch(name) is not None
    return canonical or _MAPPED.fullmatch(name) is not None


def event_topic_for(settings: Settings, lane: str, event_name: str) -> str:
    """The full per-event topic of ``event_name`` in ``lane``; SchemaError when no legal topic exists."""
    topic = settings.event_topic(lane, topic_name_for(event_name))
    if len(topic) > MAX_TOPIC_CHARS or not _LEGAL_TOPIC.fullmatch(topic):
        raise _invalid(f"topic {topic[:60]!r}… for this name is not a legal Kafka topic name")
    return topic


def router_input_group(app_id: str) -> str:
    """The consumer group whose committed offsets say how far the router has routed."""
    return f"{app_id}-router-input"
