"""A Python client for the Highway collector (``POST /v1/events``, docs/collector-clients.md).

``CollectorClient(url, key, lane)`` buffers events and sends them from one background thread in
batches of ``batch_size``, or when the oldest buffered event has waited ``linger_s``, or on
:meth:`~CollectorClient.flush`. Bodies are JSON arrays, gzip-compressed.

Delivery is at-least-once: a batch is retried (``connectors.collector_retry``: exponential backoff with
full jitter, floored by ``Retry-After``) on 429/5xx answers and connection errors until
``delivery_timeout_s``. Once a batch gave up, the batches behind it get one attempt each until an
answer comes back, so an outage fails the buffer in seconds rather than one timeout per batch.

Every event gets its ``event_id`` (a uuid4, unless the caller set one) in
:meth:`~CollectorClient.send`, before the first attempt, and a retry resends the very same bytes: an
event that lands twice (the collector wrote it but its answer was lost) lands with the same
``event_id``, which downstream deduplication keys on. ``ambiguous_retries`` counts such retries.

Rejected events (the collector's per-event ``rejected`` list, or a 400 for the whole batch) are bad
input, not failures: they are kept in ``rejected`` naming the field. Batches that cannot be delivered
(401, 403, other 4xx, or retries exhausted) are kept whole in ``failures`` until
:meth:`~CollectorClient.flush` (or :meth:`~CollectorClient.close`) hands them over in a
:class:`CollectorError`, so no event is lost without the caller being told, and the caller may resend.
"""

from __future__ import annotations

import gzip
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from connectors.collector_retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from core.errors import HighwayError

Event = dict[str, Any]


class CollectorError(HighwayError):
    """Some batches could not be delivered; ``failures`` holds them (their events included)."""

    def __init__(self, failures: list[CollectorFailure]) -> None:
        self.failures = failures
        events = sum(len(failure.events) for failure in failures)
        first = failures[0]
        super().__init__(
            f"{events} events in {len(failures)} batches not delivered to the collector; "
            f"first: HTTP {first.status or '-'}: {first.error}"
        )


@dataclass(frozen=True)
class CollectorFailure:
    events: list[Event]
    status: int | None
    error: str


@dataclass(frozen=True)
class RejectedEvent:
    event_id: str | None
    field: str | None
    error: str


@dataclass
class _Answer:
    status: int | None
    body: dict[str, Any]
    retry_after_s: float | None
    error: str
    reached_server: bool


class CollectorClient:
    """Batching, compressing, retrying sender of events to one collector lane. Thread-safe."""

    def __init__(
        self,
        url: str,
        key: str,
        lane: str | None = None,
        *,
        batch_size: int = 500,
        linger_s: float = 0.1,
        max_buffered: int = 50_000,
        compress: bool = True,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size < 1 or linger_s < 0 or max_buffered < batch_size:
            raise ValueError("batch_size >= 1, linger_s >= 0 and max_buffered >= batch_size are required")
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/v1/events") else f"{base}/v1/events"
        self.lane = lane
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.max_buffered = max_buffered
        self.compress = compress
        self.retry = retry or RetryPolicy()
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "User-Agent": "highway-python-collector-client",
            **({"Content-Encoding": "gzip"} if compress else {}),
        }
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout_s)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._pending: list[Event] = []
        self._oldest_at: float | None = None
        self._flushers = 0
        self._busy = False
        self._closing = False
        self._outage = False
        self.accepted = 0
        self.requests = 0
        self.retries = 0
        self.ambiguous_retries = 0
        self.rejected: list[RejectedEvent] = []
        self.failures: list[CollectorFailure] = []
        self._sender = threading.Thread(target=self._run, name="highway-collector-client", daemon=True)
        self._sender.start()

    # --- the caller's side -------------------------------------------------------------------

    def send(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Buffer events (copied; ``event_id`` assigned if absent); blocks while the buffer is full."""
        copies = [dict(event) for event in events]
        for copy in copies:
            if not copy.get("event_id"):
                copy["event_id"] = str(uuid.uuid4())
        with self._cond:
            while copies:
                if self._closing:
                    raise RuntimeError("CollectorClient.send after close")
                room = self.max_buffered - len(self._pending)
                if room <= 0:
                    self._cond.wait()
                    continue
                if not self._pending:
                    self._oldest_at = time.monotonic()
                self._pending.extend(copies[:room])
                del copies[:room]
                self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything buffered and wait for the answers; raise :class:`CollectorError` on failures."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                while self._pending or self._busy:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"{len(self._pending)} events still buffered after {timeout_s} s")
                    self._cond.wait(remaining)
            finally:
                self._flushers -= 1
            if self.failures:
                failures, self.failures = self.failures, []
                raise CollectorError(failures)

    def close(self) -> None:
        """Flush, stop the sender thread and release the connection pool (raises like :meth:`flush`)."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._sender.join()
            if self._owns_http:
                self._http.close()

    def __enter__(self) -> CollectorClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        with self._cond:
            return len(self._pending)

    # --- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
                self._busy = True
                self._cond.notify_all()  # senders blocked on a full buffer
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _next_batch(self) -> list[Event] | None:
        """Wait (holding the condition) until a batch is due; None once closing with nothing left."""
        while True:
            pending = self._pending
            if pending:
                waited = time.monotonic() - (self._oldest_at or 0.0)
                if len(pending) >= self.batch_size or self._flushers or self._closing:
                    break
                if waited >= self.linger_s:
                    break
                self._cond.wait(self.linger_s - waited)
            elif self._closing:
                return None
            else:
                self._cond.wait()
        batch = pending[: self.batch_size]
        del pending[: self.batch_size]
        # The rest was buffered before now, so counting its linger from now only ever sends it later,
        # and only when it is less than a full batch.
        self._oldest_at = time.monotonic() if pending else None
        return batch

    def _deliver(self, batch: list[Event]) -> None:
        body = orjson.dumps(batch)
        if self.compress:
            body = gzip.compress(body, compresslevel=5)
        started = time.monotonic()
        attempt = 0
        while True:
            answer = self._post(body)
            if answer.status is not None and answer.status not in RETRY_STATUSES:
                self._outage = False
                self._settle(batch, answer)
                return
            delay = self.retry.delay(attempt, answer.retry_after_s, self._rng)
            # During an outage that already outlasted one batch's delivery timeout, the batches queued
            # behind it get one attempt each: they fail in seconds instead of one timeout after another.
            if self._outage or time.monotonic() + delay - started > self.retry.delivery_timeout_s:
                self._outage = True
                self._fail(batch, answer.status, f"gave up after {attempt + 1} attempts: {answer.error}")
                return
            self.retries += 1
            if answer.status is None and answer.reached_server:
                self.ambiguous_retries += 1
            attempt += 1
            self._sleep(delay)

    def _post(self, body: bytes) -> _Answer:
        params = {"lane": self.lane} if self.lane else None
        self.requests += 1
        try:
            response = self._http.post(self.endpoint, content=body, headers=self._headers, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return _Answer(None, {}, None, f"{type(exc).__name__}: {exc}", reached_server=False)
        except httpx.TransportError as exc:
            # The request may have reached the collector and been written before the connection broke.
            return _Answer(None, {}, None, f"{type(exc).__name__}: {exc}", reached_server=True)
        try:
            parsed = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            parsed = {}
        body_dict = parsed if isinstance(parsed, dict) else {}
        error = str(body_dict.get("error") or response.reason_phrase or response.status_code)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return _Answer(response.status_code, body_dict, retry_after, error, reached_server=True)

    def _settle(self, batch: list[Event], answer: _Answer) -> None:
        status = answer.status
        if status in (200, 202) or (status == 400 and "rejected" in answer.body):
            self._record_rejections(batch, answer.body.get("rejected") or [])
            with self._cond:
                self.accepted += int(answer.body.get("accepted", 0) or 0)
            return
        if status == 413 and len(batch) > 1:
            # One event too large fails alone; the rest of the batch still goes.
            half = len(batch) // 2
            self._deliver(batch[:half])
            self._deliver(batch[half:])
            return
        self._fail(batch, status, answer.error)

    def _record_rejections(self, batch: list[Event], rejected: list[Any]) -> None:
        found: list[RejectedEvent] = []
        for item in rejected:
            entry = item if isinstance(item, dict) else {}
            index = entry.get("index")
            event = batch[index] if isinstance(index, int) and 0 <= index < len(batch) else {}
            found.append(RejectedEvent(event.get("event_id"), entry.get("field"), str(entry.get("error"))))
        if found:
            with self._cond:
                self.rejected.extend(found)

    def _fail(self, batch: list[Event], status: int | None, error: str) -> None:
        with self._cond:
            self.failures.append(CollectorFailure(batch, status, error))
