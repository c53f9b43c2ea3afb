"""The collector's delivery edge without a broker: admission (429) and a full producer queue.

The producer points at a closed port, so nothing is ever acknowledged and messages stay counted
as in flight until their (short) delivery timeout fails them.
"""

from __future__ import annotations

import asyncio

import pytest

from connectors.collector_delivery import DeliveryEdge, Saturated
from connectors.local.process import free_ports
from core.settings import Settings

RECORDS = [(b"u%d" % i, b'{"i": %d}' % i) for i in range(10)]


def edge(max_in_flight: int, **config: object) -> DeliveryEdge:
    settings = Settings(_env_prefix="HIGHWAY_TEST_NO_ENV_", kafka_bootstrap=f"127.0.0.1:{free_ports(1)[0]}")
    return DeliveryEdge(settings, max_in_flight, **{"message.timeout.ms": 300, **config})


def test_requests_over_the_in_flight_bound_are_refused_before_producing() -> None:
    delivery = edge(max_in_flight=15)

    async def scenario() -> None:
        first = await delivery.send("t", RECORDS)  # idle: admitted even if alone over the bound
        assert first is not None
        assert delivery.in_flight == 10
        with pytest.raises(Saturated):
            await delivery.send("t", RECORDS)
        assert delivery.in_flight == 10  # nothing of the refused request was produced
        delivery.start()
        outcome = await asyncio.wait_for(first, 10)
        assert outcome.failed == 10  # no broker: every message timed out
        assert outcome.error

    asyncio.run(scenario())
    assert delivery.degraded()
    delivery.close(1.0)


def test_a_request_bigger_than_the_bound_is_taken_when_idle() -> None:
    delivery = edge(max_in_flight=5)

    async def scenario() -> None:
        assert await delivery.send("t", RECORDS, wait=False) is None
        assert delivery.in_flight == 10

    asyncio.run(scenario())
    delivery.close(0.5)


def test_a_full_producer_queue_fails_the_rest_of_the_request() -> None:
    delivery = edge(max_in_flight=1000, **{"queue.buffering.max.messages": 4})
    delivery.start()

    async def scenario() -> None:
        future = await delivery.send("t", RECORDS)
        assert future is not None
        outcome = await asyncio.wait_for(future, 10)
        assert outcome.failed == 10  # queued ones timed out, the others waited for room or gave up
        assert outcome.delivered == 0

    asyncio.run(scenario())
    delivery.close(1.0)
