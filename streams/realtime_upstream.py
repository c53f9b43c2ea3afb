"""Whether the router has routed everything: the gate on closing the windows of quiet partitions.

A realtime partition without records for ``realtime_idle_timeout_s`` lets its event clock follow the
wall clock so that the last windows close once traffic stops. A quiet partition is not always an
idle one, though: while the router is down or restarting, or the broker is away, the events of those
windows are still in the all-events topic, and closing the windows first would count them as late.
So the clock moves only when the router's input group has committed every lane's all-events topic
to its end (or there is no router group at all: the common topic is fed some other way).
"""

from __future__ import annotations

import logging
import time

from connectors.kafka_admin import KafkaAdmin
from core.errors import TransientError
from core.routing.naming import router_input_group
from core.settings import Settings

log = logging.getLogger(__name__)
ASK_EVERY_S = 1.0  # an answer is reused this long: the idle check runs after every poll
TELL_EVERY_S = 30.0


class RouterDrained:
    """``upstream_drained`` for :meth:`streams.realtime_state.RealtimeState.idle` (consumer thread)."""

    def __init__(self, settings: Settings, admin: KafkaAdmin | None = None) -> None:
        self.settings = settings
        self.admin = admin or KafkaAdmin(settings, timeout_s=3.0)
        self._answer = (float("-inf"), False)
        self._told_at = float("-inf")

    def __call__(self) -> bool:
        asked_at, answer = self._answer
        now = time.monotonic()
        if now - asked_at < ASK_EVERY_S:
            return answer
        answer = self._ask()
        self._answer = (now, answer)
        return answer

    def _ask(self) -> bool:
        group = router_input_group(self.settings.app_id)
        try:
            for lane in self.settings.lanes:
                lag = self.admin.group_lag(group, self.settings.all_events_topic(lane))
                if lag:  # None: no router group on this lane, nothing to wait for
                    self._tell(f"the router is {lag} events behind on {lane}")
                    return False
        except TransientError as exc:
            self._tell(f"the router's progress is unknown: {exc}")
            return False
        return True

    def _tell(self, why: str) -> None:
        """Say why quiet windows stay open — once per ``TELL_EVERY_S``, not once a second."""
        now = time.monotonic()
        if now - self._told_at >= TELL_EVERY_S:
            self._told_at = now
            log.info("realtime: quiet partitions' windows stay open: %s", why)
