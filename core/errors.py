"""One exception root for Highway.

Subclasses say what a caller should do: ``TransientError`` — retry with backoff (S3 5xx, broker
unavailable); ``TerminalError`` — stop or dead-letter, retrying cannot help. Messages name the
topic, partition, offset or key involved.
"""

from __future__ import annotations


class HighwayError(Exception):
    """Root of every error Highway raises on purpose."""


class ConfigError(HighwayError):
    """Settings are missing or invalid; the message names every bad key."""


class TransientError(HighwayError):
    """Retrying later may succeed (network, throttling, a broker or S3 briefly away)."""


class TerminalError(HighwayError):
    """Retrying cannot help; the input must be dead-lettered or the process stopped."""


class InfrastructureError(HighwayError):
    """A local service (Kafka broker, S3 API) could not be set up or started."""


class SchemaError(TerminalError):
    """An event does not fit its schema. ``field`` names the offending field, ``reason`` a code."""

    def __init__(self, reason: str, field: str | None, detail: str) -> None:
        self.reason = reason
        self.field = field
        self.detail = detail
        where = f" at {field!r}" if field else ""
        super().__init__(f"{reason}{where}: {detail}")
