"""The edges the router's commit path (``core.routing.commit``) is written against.

``connectors.kafka_admin.KafkaAdmin`` and ``connectors.router_producer.BulkProducer`` satisfy these
structurally; unit tests use fakes that fail at any step. Offsets go to a ``core.ports.OffsetStore``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from core.routing.classify import OutRecord


class TopicAdmin(Protocol):
    def ensure_topics(self, names: Iterable[str]) -> list[str]:
        """Create the topics that do not exist yet; return those this call created.

        Raises ``TransientError`` when a topic could not be created.
        """

    def list_topics(self, pattern: str | None = None) -> list[str]:
        """Topic names, optionally those that fullmatch ``pattern``; ``TransientError`` if unreachable."""


class Pending(Protocol):
    """Delivery state of one ``send``."""

    @property
    def done(self) -> bool:
        """Every record sent has a delivery report (acknowledged or failed)."""


class Refusal(Protocol):
    """A record Kafka will never accept: its index in the records sent, and why."""

    @property
    def index(self) -> int: ...

    @property
    def error(self) -> str: ...


PendingT = TypeVar("PendingT", bound=Pending)


class RecordProducer(Protocol[PendingT]):
    def send(self, records: Sequence[OutRecord]) -> PendingT:
        """Enqueue ``records`` in order (not blocking on acknowledgements)."""

    def wait_for_topics(self, topics: Sequence[str]) -> None:
        """Block until the producer can send to just-created ``topics``; ``TransientError`` if not."""

    def complete(self, records: Sequence[OutRecord], pending: PendingT) -> Sequence[Refusal]:
        """Wait until Kafka acknowledged every record of ``pending`` (re-sending retriable failures).

        Returns the records refused for good; raises when other failures persist.
        """
