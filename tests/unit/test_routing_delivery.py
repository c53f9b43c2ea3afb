"""PendingDelivery bookkeeping (no broker): completion, retriable vs permanent failures, callbacks."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError

from connectors.router_producer import PendingDelivery


def test_completes_after_every_report_and_sorts_failures() -> None:
    pending = PendingDelivery(5)
    fired: list[str] = []
    pending.add_done_callback(lambda: fired.append("done"))
    pending.settle(0, None)
    pending.settle(1, KafkaError(KafkaError._MSG_TIMED_OUT))
    pending.settle(2, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert not pending.done
    assert fired == []
    pending.settle(3, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    assert not pending.done
    pending.settle(4, KafkaError(KafkaError.UNKNOWN_TOPIC_ID))  # not "retriable" to librdkafka, yet heals
    assert pending.done
    assert fired == ["done"]
    assert sorted(index for index, _ in pending.failed) == [1, 3, 4]
    assert [refused.index for refused in pending.refused] == [2]


def test_empty_batch_is_done_and_late_callbacks_run_at_once() -> None:
    pending = PendingDelivery(0)
    fired: list[int] = []
    pending.add_done_callback(lambda: fired.append(1))
    assert pending.done
    assert fired == [1]


def test_wait_async_wakes_when_another_thread_settles() -> None:
    async def scenario() -> bool:
        pending = PendingDelivery(1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: loop.run_in_executor(None, pending.settle, 0, None))
        await asyncio.wait_for(pending.wait_async(), 5)
        return pending.done

    assert asyncio.run(scenario())
