"""The small interfaces the commit paths are written against; connectors implement them.

Each stage's "what is durable before we commit" sequence lives in ``core`` as plain code over these
Protocols, so unit tests drive the real sequence with fakes that fail at every step. The Kafka, S3
and catalog edges in ``connectors`` (and the consumer service in ``streams``) satisfy them
structurally; nothing here imports a client library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

TopicPartitionKey = tuple[str, int]


class OffsetStore(Protocol):
    """Where a consumer group's progress is committed: next offset to read per topic-partition."""

    def commit(self, offsets: Mapping[TopicPartitionKey, int]) -> None:
        """Commit synchronously; raise when the commit did not happen."""
