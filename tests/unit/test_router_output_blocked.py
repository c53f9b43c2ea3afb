"""The router's output when librdkafka holds a transactional call past its timeout.

Seen in the fault suite: after a broker restart ``send_offsets_to_transaction`` stayed blocked for
minutes, past its own timeout (librdkafka #5456, #5511). The output abandons the producer at
timeout + grace, and says it is blocked (``/health`` degraded) from the timeout on.
"""

from __future__ import annotations

import threading
import time

import pytest

from connectors import router_output
from core.errors import TransientError
from tests.unit.test_router_output import OFFSETS, Rig


def rig_in_a_transaction(monkeypatch: pytest.MonkeyPatch, timeout_s: float, grace_s: float) -> Rig:
    """An exactly-once output with one record sent, its calls bounded by ``timeout_s`` + ``grace_s``."""
    monkeypatch.setattr(router_output, "CALL_GRACE_S", grace_s)
    rig = Rig()
    rig.output.timeout_s = timeout_s
    rig.output.begin()
    rig.send(b"a")
    return rig


def test_a_transactional_call_blocked_past_its_timeout_abandons_the_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """librdkafka held send_offsets_to_transaction for minutes across a broker restart (fault suite)."""
    rig = rig_in_a_transaction(monkeypatch, timeout_s=0.1, grace_s=0.1)
    stuck = threading.Event()
    rig.producer.send_offsets_to_transaction = lambda *args: stuck.wait()  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(TransientError, match="send_offsets_to_transaction did not return"):
            rig.output.commit(OFFSETS, rig.group)
        assert rig.output.recreated == 1
        rig.output.begin()  # a new producer, whose init_transactions fences the stuck one
        assert len(rig.made) == 2
    finally:
        stuck.set()


def test_a_call_past_its_timeout_is_reported_until_it_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """While librdkafka holds a transactional call past its timeout the lane routes nothing: /health
    must say so (degraded, naming the call), not ok, and be ok again once the call is done."""
    rig = rig_in_a_transaction(monkeypatch, timeout_s=0.05, grace_s=5.0)
    release = threading.Event()
    inside = threading.Event()

    def held(*args: object) -> None:
        inside.set()
        release.wait()

    rig.producer.send_offsets_to_transaction = held  # type: ignore[method-assign,assignment]
    committing = threading.Thread(target=rig.output.commit, args=(OFFSETS, rig.group))
    assert rig.output.overdue() is None
    committing.start()
    try:
        assert inside.wait(5)
        time.sleep(0.2)
        reason = rig.output.overdue()
        assert reason is not None
        assert reason.startswith("send_offsets_to_transaction blocked for")
        assert "a new producer takes over at 5s" in reason
    finally:
        release.set()
        committing.join(5)
    assert rig.output.overdue() is None
    assert rig.output.recreated == 0
