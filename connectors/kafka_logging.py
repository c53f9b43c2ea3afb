"""librdkafka's log lines through Python logging (logger ``highway.librdkafka``), at sane levels.

Without this, librdkafka writes ``%3|…|FAIL|…`` lines to stderr itself: with the broker away a
client repeats "Connect to … failed: Connection refused" on every reconnect, ~300 lines before
the command's own one-line error. Here:

* a broker that cannot be reached (refused, timed out, disconnected, name not resolved) is INFO:
  it is transient, librdkafka retries, and what it means for the work surfaces as the stage's
  degraded health or the command's error; authentication and TLS failures stay errors;
* a repeated line (same client and facility) is logged at most once per :data:`REPEAT_WINDOW_S`,
  the next one saying how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache

LOGGER_NAME = "highway.librdkafka"
REPEAT_WINDOW_S = 60.0

_UNREACHABLE = (
    "Connection refused",
    "Connect to ",
    "timed out",
    "Disconnected",
    "Failed to resolve",
    "brokers are down",
    "Broker transport failure",
)


def effective_level(facility: str, text: str, level: int) -> int:
    """The Python level for one librdkafka line (pure)."""
    unreachable = any(part in text for part in _UNREACHABLE)
    refused_credentials = any(part in text for part in ("SSL", "SASL", "uthenticat"))
    return logging.INFO if level > logging.INFO and unreachable and not refused_credentials else level


class RepeatThrottle:
    """At most one line per key and window; thread-safe (librdkafka callbacks come from many threads)."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._last: dict[object, float] = {}
        self._left_out: dict[object, int] = {}

    def admit(self, key: object) -> int | None:
        """None: leave this line out; else log it, and this many like it were left out before it."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window_s:
                self._left_out[key] = self._left_out.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._left_out.pop(key, 0)

    def suffix(self, left_out: int) -> str:
        return f" ({left_out} more like it in the last {self.window_s:.0f}s left out)" if left_out else ""


class LibrdkafkaLog:
    """What confluent-kafka's ``logger`` option calls: ``log(level, "%s [%s] %s", fac, name, text)``."""

    def __init__(self, logger: logging.Logger, window_s: float = REPEAT_WINDOW_S) -> None:
        self._logger = logger
        self._throttle = RepeatThrottle(window_s)

    def log(self, level: int, fmt: str, *args: object) -> None:
        if len(args) != 3:
            self._logger.log(level, fmt, *args)
            return
        facility, name, text = (str(arg) for arg in args)
        level = effective_level(facility, text, level)
        if not self._logger.isEnabledFor(level):
            return
        left_out = self._throttle.admit((name, facility)) if level > logging.DEBUG else 0
        if left_out is not None:
            suffix = self._throttle.suffix(left_out)
            self._logger.log(level, "librdkafka %s [%s] %s%s", facility, name, text, suffix)


_AIOKAFKA_UNREACHABLE = (
    "Connect call failed",
    "NodeNotReadyError",
    "KafkaConnectionError",
    "RequestTimedOutError",
    "Unable to update metadata",
    "coordinator",
)


class AiokafkaLogThrottle(logging.Filter):
    """The same levels and repeat window for aiokafka, the client of faust's own consumer and producer.

    With the broker away it logs an ERROR for every reconnect attempt of every request kind (~40 lines
    a second); the stages' health already says the broker is away.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self._throttle = RepeatThrottle(window_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if any(part in record.getMessage() for part in _AIOKAFKA_UNREACHABLE):
            record.levelno, record.levelname = logging.INFO, "INFO"
        left_out = self._throttle.admit((record.name, record.msg))
        if left_out is None:
            return False
        if left_out:
            record.msg = f"{record.msg}{self._throttle.suffix(left_out)}"
        return True


def throttle_aiokafka_logs(window_s: float = REPEAT_WINDOW_S) -> None:
    """Put :class:`AiokafkaLogThrottle` on every aiokafka logger (a logger's filters are not inherited,
    so each module's logger gets it); call once faust, and so aiokafka, is imported."""
    throttle = AiokafkaLogThrottle(window_s)
    for name in list(logging.root.manager.loggerDict):
        if name == "aiokafka" or name.startswith("aiokafka."):
            logging.getLogger(name).addFilter(throttle)


@cache
def librdkafka_logger() -> LibrdkafkaLog:
    """The process's one adapter (the repeat window is per client and facility)."""
    return LibrdkafkaLog(logging.getLogger(LOGGER_NAME))
