"""The realtime commit path: publish closed-window partials, in order per input partition.

Delivery guarantee: each partial carries its partition's checkpoint, whose ``closed_until`` tells
readers that every earlier window of that partition is final — a partition without a record for
such a window contributed zero. So a partial may become visible only after every earlier partial of
its partition is acknowledged: were a failed partial followed by a later one, a reader would take
the failed window as complete with that partition's users missing (undercounted, silently).

The rule enforced here: partials are published in rounds; round ``i`` sends the ``i``-th pending
partial of every input partition, then waits until the whole round is acknowledged. A failure
raises :class:`PartialNotPublished` before any later partial of any partition is sent; the caller
treats it as fatal (the stage stops and a restart resumes from the last published checkpoints, whose
replay is deterministic and overwrites equal records). Rounds keep one round trip per batch in the
steady state, where every partition closes at most one window per batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import TerminalError
from core.realtime.ports import PartialPublisher


class PartialNotPublished(TerminalError):
    """A closed-window partial was not acknowledged; nothing later of its partition was sent."""


@dataclass(frozen=True)
class Partial:
    lane: str
    partition: int  # input partition of the lane's common topic
    key: str
    record: Mapping[str, Any]


def publish_in_order(publisher: PartialPublisher, partials: Sequence[Partial]) -> int:
    """Publish ``partials`` (close order within each input partition); returns how many were sent.

    Raises :class:`PartialNotPublished` when sending or acknowledging fails; every partial of a later
    round is then unsent.
    """
    queues: dict[tuple[str, int], list[Partial]] = {}
    for partial in partials:
        queues.setdefault((partial.lane, partial.partition), []).append(partial)
    rounds = max((len(queue) for queue in queues.values()), default=0)
    sent = 0
    for index in range(rounds):
        batch = [queue[index] for queue in queues.values() if index < len(queue)]
        for partial in batch:
            try:
                publisher.send(partial.lane, partial.key, partial.record)
            except Exception as exc:
                _raise_after_wait(publisher, partial, exc)
            sent += 1
        try:
            publisher.wait()
        except Exception as exc:
            keys = ", ".join(p.key for p in batch)
            raise PartialNotPublished(f"partials not acknowledged (round of {keys}): {exc}") from exc
    return sent


def _raise_after_wait(publisher: PartialPublisher, failed: Partial, cause: Exception) -> None:
    # Partials of other partitions already sent in this round stay valid; wait for them so the
    # error reports the first cause, then stop before anything later.
    with contextlib.suppress(Exception):
        publisher.wait()
    raise PartialNotPublished(f"partial {failed.key} could not be sent: {cause}") from cause
