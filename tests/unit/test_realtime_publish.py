"""The realtime commit path, driven with a publisher that fails at every possible point.

The rule under test: a partial that is not acknowledged stops publishing before any later partial
of its input partition is sent, so no reader can see a later checkpoint covering a lost window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from core.realtime.publish import Partial, PartialNotPublished, publish_in_order


class FakePublisher:
    """Records sends and waits; fails the ``fail_send``-th send or the ``fail_wait``-th wait."""

    def __init__(self, fail_send: int | None = None, fail_wait: int | None = None) -> None:
        self.fail_send = fail_send
        self.fail_wait = fail_wait
        self.sends = 0
        self.waits = 0
        self.log: list[tuple[str, str]] = []  # ("send", key) / ("wait", "")
        self.pending: list[Partial] = []
        self.acked: list[Partial] = []
        self.lost: list[Partial] = []  # sent, then reported as not acknowledged

    def send(self, lane: str, key: str, record: Mapping[str, Any]) -> None:
        index, self.sends = self.sends, self.sends + 1
        if index == self.fail_send:
            raise RuntimeError(f"cannot send {key}")
        self.log.append(("send", key))
        self.pending.append(Partial(lane, int(record["partition"]), key, record))

    def wait(self) -> None:
        index, self.waits = self.waits, self.waits + 1
        self.log.append(("wait", ""))
        pending, self.pending = self.pending, []
        if index == self.fail_wait:
            self.lost += pending
            raise RuntimeError("not acknowledged")
        self.acked += pending


def partials() -> list[Partial]:
    """Three partitions closing 3, 1 and 2 windows, interleaved as a batch would close them."""
    out = []
    for start, partition in [(0, 0), (0, 1), (1, 0), (0, 2), (2, 0), (1, 2)]:
        out.append(
            Partial("a", partition, f"a|{start}|{partition}", {"partition": partition, "start": start})
        )
    return out


def check_order_rule(publisher: FakePublisher, failed: bool) -> None:
    expected = partials()
    for partition in (0, 1, 2):
        mine = [p.key for p in expected if p.partition == partition]
        sent = [key for kind, key in publisher.log if kind == "send" and key in mine]
        assert sent == mine[: len(sent)], "a partition's partials are sent in close order"
        acked = [p.key for p in publisher.acked if p.partition == partition]
        assert acked == mine[: len(acked)]
        unacked = [key for key in sent if key not in acked]
        # Nothing of a partition is sent after one of its partials that was not acknowledged.
        assert len(unacked) <= 1
        if unacked:
            assert sent[-1] == unacked[0]
    if not failed:
        assert [p.key for p in publisher.acked if p.partition == 0] == ["a|0|0", "a|1|0", "a|2|0"]
        assert publisher.pending == []
        assert publisher.lost == []


def test_all_partials_published_in_rounds_one_per_partition() -> None:
    publisher = FakePublisher()
    assert publish_in_order(publisher, partials()) == 6
    check_order_rule(publisher, failed=False)
    assert publisher.log == [
        ("send", "a|0|0"),
        ("send", "a|0|1"),
        ("send", "a|0|2"),
        ("wait", ""),
        ("send", "a|1|0"),
        ("send", "a|1|2"),
        ("wait", ""),
        ("send", "a|2|0"),
        ("wait", ""),
    ]


def test_nothing_to_publish_waits_for_nothing() -> None:
    publisher = FakePublisher()
    assert publish_in_order(publisher, []) == 0
    assert publisher.log == []


@pytest.mark.parametrize("fail_send", range(6))
def test_a_partial_that_cannot_be_sent_is_fatal_before_anything_later(fail_send: int) -> None:
    publisher = FakePublisher(fail_send=fail_send)
    with pytest.raises(PartialNotPublished, match="could not be sent"):
        publish_in_order(publisher, partials())
    check_order_rule(publisher, failed=True)
    assert publisher.sends == fail_send + 1, "no send after the failed one"
    assert publisher.log[-1] == ("wait", ""), "what was already sent is awaited before stopping"


@pytest.mark.parametrize("fail_wait", range(3))
def test_a_partial_not_acknowledged_is_fatal_before_anything_later(fail_wait: int) -> None:
    publisher = FakePublisher(fail_wait=fail_wait)
    with pytest.raises(PartialNotPublished, match="not acknowledged"):
        publish_in_order(publisher, partials())
    check_order_rule(publisher, failed=True)
    assert publisher.lost, "the failed round is reported lost"
    assert publisher.log[-1] == ("wait", ""), "no send after the failed wait"
    assert publisher.waits == fail_wait + 1
