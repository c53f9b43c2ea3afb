"""When a collector client retries a request, and how long it waits first.

Shared by :mod:`connectors.collector_client`; the JavaScript snippet (``highway/collector_js/highway.js``)
follows the same rules so that every Highway client behaves alike towards a busy collector.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""Answers after which the same request may succeed later. 500 is in: the collector answers 200 only
once Kafka acknowledged the batch, so anything else leaves at-least-once delivery to the client."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, floored by the server's ``Retry-After``.

    ``delivery_timeout_s`` bounds the time one batch may spend retrying (like Kafka's
    ``delivery.timeout.ms``); after it the batch is reported as failed, never dropped silently.
    """

    base_s: float = 0.1
    cap_s: float = 10.0
    delivery_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.delivery_timeout_s <= 0:
            raise ValueError("RetryPolicy needs base_s > 0, cap_s >= base_s and delivery_timeout_s > 0")

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry).

        Full jitter spreads clients that failed together; ``Retry-After`` is a floor to which the jitter
        is added, so a fleet told "1 second" does not come back in the same millisecond.
        """
        jitter = rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** min(attempt, 32)))
        if retry_after_s is None:
            return jitter
        return retry_after_s + min(jitter, self.base_s * 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
