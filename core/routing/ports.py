"""The edges the router's commit path (``core.routing.commit``) is written against.

``connectors.router_output.RouterOutput`` and ``connectors.topic_provisioner.TopicProvisioner``
satisfy these structurally; unit tests use fakes that fail at any step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.ports import OffsetStore, TopicPartitionKey
from core.routing.classify import OutRecord


class InputGroup(OffsetStore, Protocol):
    """The input consumer group: plain offset commits, or its metadata for a transaction."""

    def group_metadata(self) -> object:
        """What ``send_offsets_to_transaction`` needs to fence a zombie of this group member."""


@dataclass(frozen=True)
class RefusedRecord:
    """A record Kafka will never accept (too large, invalid, …) — identified by topic and bytes."""

    topic: str
    value: bytes
    error: str


class OutputSession(Protocol):
    """The producer side of the router: records sent since ``begin``, made durable by ``commit``.

    ``atomic`` sessions (Kafka transactions) make a unit's records visible together with its input
    offsets or not at all; the others (at least once) deliver records as they go and commit the
    offsets once every record is acknowledged.
    """

    @property
    def atomic(self) -> bool: ...

    def begin(self) -> None:
        """Open a unit of work (a transaction) if none is open; ``TransientError`` if Kafka is away."""

    def send(self, records: Sequence[OutRecord]) -> list[tuple[int, str]]:
        """Enqueue ``records`` in order; return ``(index, error)`` of those refused before sending."""

    def commit(self, offsets: Mapping[TopicPartitionKey, int], group: InputGroup) -> list[RefusedRecord]:
        """Make every record sent since ``begin`` durable, and commit ``offsets`` with them.

        Returns ``[]`` on success. Records Kafka refused for good are returned instead, and then
        *nothing* was committed: an atomic session has aborted the unit (none of its records will
        be read), the others delivered the rest. Raises ``TransientError`` (after aborting) when
        durability could not be reached; the caller must not commit anything derived from the unit.
        """

    def abort(self) -> None:
        """Drop the open unit (best effort, never raises): it will be routed again."""


class TopicProvisioning(Protocol):
    """Creates per-event topics in the background and says when the producer can send to them."""

    def request(self, topics: Iterable[str]) -> None:
        """Ask for ``topics`` to be created (non-blocking, idempotent)."""

    def take_results(self) -> tuple[list[str], dict[str, str]]:
        """Topics ready since the last call, and topics refused for good with the reason."""
