"""Helpers of the collector's integration tests: a collector worker, events, a retrying sender."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.collect.keys import hash_key
from core.envvars import with_overrides
from core.settings import Settings
from highway.verify.kafka_read import read_topics
from tests.support import WorkerProcess

KEY = "test-key-" + uuid.uuid4().hex
ORIGIN = "https://shop.example"


def collector_settings(make_settings: Any, **overrides: Any) -> Settings:
    settings: Settings = make_settings()
    return with_overrides(
        settings,
        collector_api_keys={settings.lanes[0]: [hash_key(KEY)]},
        collector_cors_origins=[ORIGIN],
        **overrides,
    )


class CollectorWorker(WorkerProcess):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, roles="collector")

    def start(self) -> CollectorWorker:
        super().start()
        return self

    def __enter__(self) -> CollectorWorker:
        return self.start()

    def faust_ready(self) -> bool:
        """faust finished starting (its conductor declares topics first; a broker lost during that
        second crashes any faust worker, whatever its roles)."""
        log = self.log_dir / f"worker-{self.settings.http_port}-{self.starts}.log"
        return log.exists() and "[^Worker]: Ready" in log.read_text(errors="replace")

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/v1/events"


def make_events(count: int, tag: str = "") -> list[dict[str, Any]]:
    prefix = tag or uuid.uuid4().hex[:8]
    return [
        {
            "event_name": f"ev{i % 5}",
            "event_id": f"{prefix}-{i}",
            "user_id": f"u{i % 37}",
            "session_id": "s",
            "platform": "web",
            "client_ts": 1,
            "server_ts": 1,  # the collector must overwrite it
            "properties": {"i": i},
        }
        for i in range(count)
    ]


def topic_events(settings: Settings) -> list[dict[str, Any]]:
    import orjson

    topic = settings.all_events_topic(settings.lanes[0])
    return [orjson.loads(m.value() or b"null") for m in read_topics(settings, [topic]).get(topic, [])]


def id_counts(settings: Settings) -> Counter[str]:
    return Counter(event["event_id"] for event in topic_events(settings))


@dataclass
class RetryingSender:
    """Threads each sending batches until every batch got a 200, resending the same events on
    connection errors, 429 and 503 (so event ids stay stable across retries)."""

    url: str
    batches: list[list[dict[str, Any]]]
    threads: int = 6
    acked: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    sent_batches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    def run(self, deadline_s: float = 240.0) -> None:
        workers = [threading.Thread(target=self._work, args=(deadline_s,)) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _take(self) -> list[dict[str, Any]] | None:
        with self._lock:
            if self._next >= len(self.batches):
                return None
            self._next += 1
            return self.batches[self._next - 1]

    def _work(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        with httpx.Client(timeout=30.0) as client:
            while (batch := self._take()) is not None:
                while time.monotonic() < deadline:
                    status = self._send(client, batch)
                    with self._lock:
                        self.statuses[status] += 1
                    if status == 200:
                        with self._lock:
                            self.acked.extend(e["event_id"] for e in batch)
                            self.sent_batches += 1
                        break
                    assert status in (0, 429, 503), f"unexpected answer {status}"
                    with self._lock:
                        self.retries += 1
                    time.sleep(0.05)

    def _send(self, client: httpx.Client, batch: list[dict[str, Any]]) -> int:
        try:
            response = client.post(self.url, json=batch, headers={"Authorization": f"Bearer {KEY}"})
        except httpx.HTTPError:
            return 0
        if response.status_code == 200:
            assert response.json()["accepted"] == len(batch)
        return response.status_code
