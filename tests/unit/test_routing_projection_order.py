"""The common topic keeps input order while a new type's events wait for their topic."""

from __future__ import annotations

from core.routing.commit import TOPIC_CREATE_FAILED
from core.routing.held import ProjectionQueue
from tests.unit.test_routing_classify import NOW_MS
from tests.unit.test_routing_commit import COMMON, SOURCE, Rig, rig, src, topic

__all__ = ["rig"]  # the fixture, for pytest


def test_projections_leave_in_input_order_behind_an_event_waiting_for_its_topic(rig: Rig) -> None:
    """The common topic is read in event-time order (realtime windows, sessions): a new type's event
    must not be projected after the events that followed it, nor hold up other types' routed records."""
    rig.route(src(0, 0), src(0, 1, "team_create"), src(0, 2), src(0, 3, "match_view"), src(0, 4))
    assert [r.source.offset for r in rig.session.pending if r.topic == COMMON] == [0]
    assert [r.source.offset for r in rig.session.pending if r.topic == topic("contest_join")] == [0, 2, 4]
    rig.provisioning.ready.append(topic("match_view"))  # the later type's topic comes first
    rig.tick(0.1)
    assert [r.source.offset for r in rig.session.pending if r.topic == COMMON] == [0]
    rig.provisioning.refused[topic("team_create")] = "policy violation"
    rig.tick(0.1)
    rig.tick(1)
    # team_create's event is dead-lettered, so not projected; the rest in input order
    assert [r.source.offset for r in rig.session.visible if r.topic == COMMON] == [0, 2, 3, 4]
    assert rig.routed("match_view") == [3]
    assert rig.dead() == [(1, TOPIC_CREATE_FAILED)]
    assert rig.session.committed == [{(SOURCE, 0): 5}]


def test_the_queue_releases_only_the_prefix_that_no_longer_waits() -> None:
    queue = ProjectionQueue()
    records = Rig().path.classifier.classify([src(0, offset) for offset in range(3)], NOW_MS).projections
    assert queue.add(records[0], None) == [records[0]]
    assert queue.add(records[1], "a") == []
    assert queue.add(records[2], None) == []  # behind a waiting one
    assert queue.release("b", keep=True) == []
    assert queue.release("a", keep=True) == records[1:]
    assert not queue
