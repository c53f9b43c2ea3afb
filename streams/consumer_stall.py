"""A consumer that receives nothing while its partitions hold unread records is stalled: say so, and
let the consumer service start a new consumer.

Seen once in the fault suite after a broker restart: the router's consumer was assigned its
partitions again and then delivered nothing for minutes, with the broker up, records waiting, and
``/health`` saying ok. Whatever the cause inside the client, a new consumer (the service's restart
path: the handler drops its uncommitted work, which is read again) recovers it unattended.

Only the time spent *waiting in consume()* counts as starving: a handler busy in a long flush or a
backoff (S3 away) is not a stall. The broker is asked (watermarks, committed offsets) only once the
consumer has starved for ``stall_s``, at most every :data:`CHECK_EVERY_S`.
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, TopicPartition

from core.errors import TransientError

CHECK_EVERY_S = 10.0
ASK_TIMEOUT_S = 5.0


class StallWatch:
    """Seconds spent waiting for records that did not come, and when to look closer (pure)."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.starved_s = 0.0
        self._next_check_at = stall_s

    def delivered(self) -> None:
        self.starved_s = 0.0
        self._next_check_at = self.stall_s

    def waited(self, seconds: float) -> bool:
        """Add a consume() that returned nothing; True when the consumer should be looked at."""
        self.starved_s += seconds
        if self.starved_s < self._next_check_at:
            return False
        self._next_check_at = self.starved_s + CHECK_EVERY_S
        return True


def stalled(consumer: Consumer, starved_s: float) -> TransientError | None:
    """The stall, if the broker answers and says records wait in the assignment; None otherwise (also
    when the broker is away: that is the broker's outage, which a new consumer would not end)."""
    assignment = consumer.assignment()
    if not assignment:
        return None
    try:
        watermarks = {
            (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=ASK_TIMEOUT_S, cached=False)
            for tp in assignment
        }
    except KafkaException:
        return None
    waiting = 0
    unknown: list[TopicPartition] = []
    for tp in consumer.position(assignment):
        low, high = watermarks[(tp.topic, tp.partition)]
        if tp.offset >= 0:
            waiting += max(0, high - tp.offset)
        elif high > low:
            unknown.append(tp)
    if unknown:
        # No position yet: where it would start is the committed offset, if the group can say.
        try:
            for tp in consumer.committed(unknown, timeout=ASK_TIMEOUT_S):
                low, high = watermarks[(tp.topic, tp.partition)]
                waiting += max(0, high - (tp.offset if tp.offset >= 0 else low))
        except KafkaException as exc:
            return TransientError(
                f"no record for {starved_s:.0f}s: {len(unknown)} partition(s) have no start position and "
                f"their committed offsets cannot be read ({exc}); starting a new consumer"
            )
    if waiting == 0:
        return None
    return TransientError(
        f"no record for {starved_s:.0f}s while {waiting} wait in {len(assignment)} assigned partition(s); "
        "starting a new consumer"
    )


class UnassignedWatch:
    """A consumer left with no partition at all for ``limit_s`` is replaced (pure; times passed in).

    Seen in the fault suite: after a broker restart the lake's consumer timed out of its group
    (``SESSTMOUT``, assignment lost) and was never given its partitions again — seven minutes of
    ``consume()`` returning nothing with an empty assignment, which :func:`stalled` cannot see. A new
    consumer joins afresh. The limit doubles at each replacement (up to :data:`MAX_LIMIT_S`) and
    resets on an assignment, so an idle member of a group with more members than partitions is
    replaced rarely.
    """

    MAX_LIMIT_S = 3600.0

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.limit_s = stall_s
        self.since: float | None = None

    def assigned(self) -> None:
        self.since = None
        self.limit_s = self.stall_s

    def unassigned(self, now: float) -> None:
        if self.since is None:
            self.since = now

    def overdue(self, now: float) -> TransientError | None:
        if self.since is None or now - self.since < self.limit_s:
            return None
        waited, self.since = now - self.since, None
        self.limit_s = min(self.MAX_LIMIT_S, self.limit_s * 2)
        return TransientError(
            f"no partition assigned for {waited:.0f}s (the group did not give this consumer any "
            f"after it rejoined); starting a new consumer, next check after {self.limit_s:.0f}s"
        )
