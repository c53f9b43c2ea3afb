"""Pacing the demo's simulator: the base rate that spreads N events over about D seconds (pure).

The simulator's rate is the rate *before* the match-start surge, which multiplies traffic and then
decays (``SimConfig.profile``); the same event count therefore ends well before ``N / rate``
seconds. The base rate is found by bisection over the simulator's own traffic profile.
"""

from __future__ import annotations

from core.sim import SimConfig


def events_sent_within(events: int, base_rate: float, seconds: float) -> float:
    """Events the simulator sends in the first ``seconds`` at ``base_rate`` (capped at ``events``)."""
    config = SimConfig(start_ms=0, events=events, base_rate=base_rate)
    total = 0.0
    for second in range(int(seconds)):
        total += base_rate * config.profile(second)
        if total >= events:
            return float(events)
    return total


def base_rate_for(events: int, duration_s: float) -> float:
    """The base rate at which ``events`` take about ``duration_s`` seconds, surge included."""
    if duration_s < 1:
        return float(events) / max(duration_s, 1e-3)
    low, high = events / duration_s / 10, events / duration_s  # the surge speeds a run up at most ~10 times
    for _ in range(40):
        middle = (low + high) / 2
        if events_sent_within(events, middle, duration_s) >= events:
            high = middle
        else:
            low = middle
    return high
