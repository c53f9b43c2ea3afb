"""Kafka admin edge: idempotent topic creation, listing and offsets (confluent-kafka AdminClient)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec

from connectors.kafka_config import confluent_config
from core.errors import TransientError
from core.settings import Settings

REFUSED_NAMES = frozenset(
    {
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    }
)
"""Creation errors about the name itself: the events of that type are dead-lettered, not retried."""
SERVED_POLL_S = 0.05


class KafkaAdmin:
    """Thin, typed wrapper over AdminClient. Safe to share; methods block up to ``timeout_s``."""

    def __init__(self, settings: Settings, timeout_s: float = 15.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._client = AdminClient(confluent_config(settings))

    def ensure_topics(
        self,
        names: Iterable[str],
        partitions: int | None = None,
        config: dict[str, str] | None = None,
    ) -> list[str]:
        """Create the topics that do not exist yet; return every one of ``names`` (all exist now).

        Idempotent under races: another worker creating the same topic first is success. Any
        topic that could not be created raises ``TransientError`` naming it.
        """
        existing, refused, failed = self.create_each(
            names, partitions or self._settings.topic_partitions, config
        )
        problems = {**failed, **refused}
        if problems:
            name = min(problems)
            raise TransientError(f"could not create topic {name!r}: {problems[name]}")
        self.wait_until_served(existing)
        return existing

    def wait_until_served(self, topics: Iterable[str]) -> None:
        """Block until every partition of ``topics`` is served by its leader (see :meth:`unserved`);
        ``TransientError`` after ``timeout_s``."""
        deadline = time.monotonic() + self._timeout_s
        waiting = self.unserved(topics)
        while waiting:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{len(waiting)} topics not served by their leaders after {self._timeout_s:.0f}s "
                    f"(e.g. {min(waiting)!r})"
                )
            time.sleep(SERVED_POLL_S)
            waiting = self.unserved(waiting)

    def unserved(self, topics: Iterable[str]) -> set[str]:
        """Those of ``topics`` with a partition whose leader does not serve it yet, in two requests.

        Served means the leader answers a ListOffsets for it. A just-created topic's metadata names
        its leaders a moment before the leaders load the partitions; a produce request in between is
        refused (NOT_LEADER_OR_FOLLOWER) and retried by librdkafka, and if a later request to the same
        partition succeeds first, the idempotent producer acknowledges the refused records as
        delivered without ever writing them (docs/operations.md, "A new topic is written only once its
        leader serves it"). A partition whose leader answers here does not refuse produce requests.
        """
        wanted = set(topics)
        if not wanted:
            return set()
        try:
            metadata = self._client.list_topics(timeout=self._timeout_s)
        except KafkaException:
            return wanted
        request: dict[TopicPartition, OffsetSpec] = {}
        waiting: set[str] = set()
        for topic in wanted:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                waiting.add(topic)
                continue
            for partition in found.partitions:
                request[TopicPartition(topic, partition)] = OffsetSpec.latest()
        if request:
            try:
                futures = self._client.list_offsets(request, request_timeout=self._timeout_s)
            except KafkaException:
                return wanted
            for tp, future in futures.items():
                try:
                    future.result(timeout=self._timeout_s)
                except (KafkaException, TimeoutError):
                    waiting.add(tp.topic)
        return waiting

    def create_each(
        self, names: Iterable[str], partitions: int, config: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str], dict[str, str]]:
        """Create ``names`` in one request: (existing now, refused for good, failed for now) with reasons.

        Refused for good are the errors about one name (invalid, forbidden by policy or ACL);
        everything else — a broker away, a timeout, a cluster-wide misconfiguration — may pass later.
        """
        settings = self._settings
        topic_config = {"retention.ms": str(settings.topic_retention_ms), **(config or {})}
        new = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=settings.topic_replication_factor,
                config=topic_config,
            )
            for name in sorted(set(names))
        ]
        existing: list[str] = []
        refused: dict[str, str] = {}
        failed: dict[str, str] = {}
        if not new:
            return existing, refused, failed
        for name, future in self._client.create_topics(new, request_timeout=self._timeout_s).items():
            try:
                future.result(timeout=self._timeout_s)
                existing.append(name)
            except KafkaException as exc:
                error = exc.args[0]
                code = error.code() if isinstance(error, KafkaError) else None
                if code == KafkaError.TOPIC_ALREADY_EXISTS:
                    existing.append(name)
                elif code in REFUSED_NAMES:
                    refused[name] = str(error)
                else:
                    failed[name] = str(error)
            except TimeoutError:
                failed[name] = f"no answer from {settings.kafka_bootstrap} within {self._timeout_s:.0f}s"
        return existing, refused, failed

    def grow_partitions(self, topic: str, partitions: int) -> None:
        """Raise ``topic``'s partition count to ``partitions`` (Kafka never shrinks one)."""
        futures = self._client.create_partitions(
            [NewPartitions(topic, partitions)], request_timeout=self._timeout_s
        )
        for future in futures.values():
            try:
                future.result(timeout=self._timeout_s)
            except KafkaException as exc:
                raise TransientError(f"could not grow {topic!r} to {partitions} partitions: {exc}") from exc

    def list_topics(self, pattern: str | None = None) -> list[str]:
        """Topic names (internal ones excluded), optionally those that fullmatch ``pattern``."""
        try:
            metadata = self._client.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise TransientError(f"could not list topics at {self._settings.kafka_bootstrap}: {exc}") from exc
        names = [name for name in metadata.topics if not name.startswith("__")]
        if pattern is not None:
            regex = re.compile(pattern)
            names = [name for name in names if regex.fullmatch(name)]
        return sorted(names)

    def partitions(self, topic: str) -> int:
        try:
            metadata = self._client.list_topics(topic, timeout=self._timeout_s)
        except KafkaException as exc:
            raise TransientError(f"could not describe topic {topic!r}: {exc}") from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return 0
        return len(found.partitions)

    def end_offsets(self, topic: str, *, stable: bool = False) -> dict[int, int]:
        """End offset per partition of ``topic``: the high watermark, or with ``stable`` the last
        stable offset (below the first record of a transaction still open, or whose commit marker is
        not written yet: what a ``read_committed`` reader can read now).

        Raises ``TransientError`` while a partition has no leader (e.g. just after creation).
        """
        count = self.partitions(topic)
        ends = self.watermarks([(topic, partition) for partition in range(count)], stable=stable)
        return {partition: high for (_, partition), (_, high) in ends.items()}

    def watermarks(
        self, partitions: Iterable[tuple[str, int]], *, stable: bool = False
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) offsets of many partitions in two requests; ``stable`` as in :meth:`end_offsets`.

        Why the high watermark by default: a transaction's commit returns before its markers reach
        every partition, so a reader that stops at the stable offset can miss committed records.
        """
        wanted = list(dict.fromkeys(partitions))
        if not wanted:
            return {}
        isolation = IsolationLevel.READ_COMMITTED if stable else IsolationLevel.READ_UNCOMMITTED
        found: dict[tuple[str, int], list[int]] = {key: [0, 0] for key in wanted}
        for index, spec in enumerate((OffsetSpec.earliest(), OffsetSpec.latest())):
            request = {TopicPartition(topic, partition): spec for topic, partition in wanted}
            futures = self._client.list_offsets(
                request, isolation_level=isolation, request_timeout=self._timeout_s
            )
            for tp, future in futures.items():
                try:
                    found[tp.topic, tp.partition][index] = future.result(timeout=self._timeout_s).offset
                except (KafkaException, TimeoutError) as exc:  # e.g. a new topic has no leader yet
                    raise TransientError(f"no offsets for {tp.topic} [{tp.partition}]: {exc!r}") from exc
        return {key: (low, high) for key, (low, high) in found.items()}

    def group_lag(self, group: str, topic: str) -> int | None:
        """Records of ``topic`` beyond ``group``'s committed offsets (to the high watermark), summed
        over its partitions; None when the group has committed nothing on the topic (no such
        consumer). Raises ``TransientError`` when the broker does not answer."""
        ends = self.end_offsets(topic)
        if not ends:  # no such topic: nothing of it to consume
            return None
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in sorted(ends)])]
        try:
            (future,) = self._client.list_consumer_group_offsets(
                request, request_timeout=self._timeout_s
            ).values()
            committed = future.result(timeout=self._timeout_s).topic_partitions
        except (KafkaException, TimeoutError) as exc:
            raise TransientError(f"no committed offsets of {group} on {topic}: {exc!r}") from exc
        offsets = {tp.partition: tp.offset for tp in committed or [] if tp.offset >= 0}
        if not offsets:
            return None
        return sum(max(0, end - offsets.get(partition, 0)) for partition, end in ends.items())

    def delete_topics(self, names: Iterable[str]) -> None:
        for future in self._client.delete_topics(list(names), request_timeout=self._timeout_s).values():
            future.result(timeout=self._timeout_s)
