"""Per-event topics created off the router's hot path: batched, confirmed per topic, retried.

The router asks for topics (``request``) and keeps routing every other type; this thread creates
whatever was asked since its last round in one ``CreateTopics`` request, then confirms each topic
twice before reporting it ready:

1. in the *producer's own* metadata (``list_topics(topic=…)``: the all-topics call does not fill the
   producer's topic cache, confluent-kafka-python #1679), every partition with a leader;
2. at the leaders (``KafkaAdmin.unserved``, one ListOffsets for all candidates): every partition
   served. Metadata names a new topic's leaders a moment before they load its partitions, and a
   record sent in between is refused and retried — and lost when a later request to the same
   partition succeeds first: librdkafka then acknowledges the refused records as delivered
   (docs/operations.md, "A new topic is written only once its leader serves it").

A name the broker refuses for good (invalid, forbidden) is reported refused; any other failure —
broker away, leaders late — is retried with backoff and shows in :attr:`degraded` meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from confluent_kafka import KafkaException

from connectors.kafka_admin import KafkaAdmin

log = logging.getLogger(__name__)

ROUND_WAIT_S = 0.05
MAX_BACKOFF_S = 5.0
DEGRADED_AFTER_S = 5.0
IDLE_WAIT_S = 1.0


class TopicCreator(Protocol):
    def create_each(
        self, names: Iterable[str], partitions: int, config: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str], dict[str, str]]: ...

    def unserved(self, topics: Iterable[str]) -> set[str]: ...


TopicReady = Callable[[str], bool]
"""Whether the producer's metadata shows a topic with a leader for every partition."""


class TopicProvisioner:
    """Creates and confirms topics on its own daemon thread (started on first request)."""

    def __init__(self, creator: TopicCreator | KafkaAdmin, is_ready: TopicReady, partitions: int) -> None:
        self._creator = creator
        self._is_ready = is_ready
        self._partitions = partitions
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._asked: dict[str, float] = {}  # to create or confirm → when first asked
        self._to_create: set[str] = set()
        self._ready: list[str] = []
        self._refused: dict[str, str] = {}
        self._last_error: str | None = None
        self.created = 0
        self.retries = 0

    # --- the router's side ------------------------------------------------------------------------
    def request(self, topics: Iterable[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for topic in topics:
                if topic not in self._asked:
                    self._asked[topic] = now
                    self._to_create.add(topic)
        self._start()
        self._wake.set()

    def take_results(self) -> tuple[list[str], dict[str, str]]:
        with self._lock:
            if not self._ready and not self._refused:
                return [], {}
            ready, refused = self._ready, self._refused
            self._ready, self._refused = [], {}
        return ready, refused

    @property
    def degraded(self) -> str | None:
        """Why topics are late, once some have waited longer than ``DEGRADED_AFTER_S``."""
        with self._lock:
            if not self._asked:
                return None
            waited = time.monotonic() - min(self._asked.values())
            if waited < DEGRADED_AFTER_S:
                return None
            cause = f": {self._last_error}" if self._last_error else ""
            return f"{len(self._asked)} new topics not ready after {waited:.0f}s{cause}"

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._asked)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    # --- the thread ---------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="topic-provisioner", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = ROUND_WAIT_S
        while not self._stop.is_set():
            self._wake.wait(backoff if self.waiting else IDLE_WAIT_S)
            self._wake.clear()
            try:
                progressed = self._round()
                backoff = ROUND_WAIT_S if progressed else min(MAX_BACKOFF_S, backoff * 2)
            except Exception as exc:  # the thread must outlive any failure: the router waits on it
                self._note_error(f"{type(exc).__name__}: {exc}")
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            if backoff > ROUND_WAIT_S:
                self.retries += 1

    def _round(self) -> bool:
        with self._lock:
            to_create = sorted(self._to_create)
            to_confirm = sorted(set(self._asked) - self._to_create)
        progressed = False
        if to_create:
            existing, refused, failed = self._creator.create_each(to_create, self._partitions)
            if failed:
                first = min(failed)
                self._note_error(f"creating {first}: {failed[first]}")
            with self._lock:
                self._to_create.difference_update(existing)
                self.created += len(existing)
                for topic, reason in refused.items():
                    log.warning("topic %s refused by the broker for good: %s", topic, reason)
                    self._to_create.discard(topic)
                    self._asked.pop(topic, None)
                    self._refused[topic] = reason
            to_confirm += existing
            progressed = bool(existing or refused)
        seen = [topic for topic in to_confirm if self._confirmed(topic)]
        waiting = self._creator.unserved(seen) if seen else set()
        served = [topic for topic in seen if topic not in waiting]
        if served:
            progressed = True
            with self._lock:
                for topic in served:
                    self._asked.pop(topic, None)
                    self._ready.append(topic)
        if progressed:
            self._last_error = None
        # A round whose creations all failed made no progress either: back off (and count the retry).
        return progressed or not (to_create or to_confirm)

    def _confirmed(self, topic: str) -> bool:
        try:
            return self._is_ready(topic)
        except KafkaException as exc:
            self._note_error(f"metadata of {topic}: {exc}")
            return False

    def _note_error(self, error: str) -> None:
        if error != self._last_error:
            log.warning("topic provisioning: %s (retrying)", error)
        self._last_error = error
