"""The router's commit path (``core.routing.commit``) on fakes that fail at every step, with the real
classification: which offsets are committed, and which records a ``read_committed`` reader sees."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from core.envelope import parse_json_event
from core.errors import TerminalError, TransientError
from core.routing import commit as commit_module
from core.routing.classify import OutRecord, SourceRecord
from core.routing.commit import PRODUCE_REFUSED, TOPIC_CREATE_FAILED, LaneCommitPath, UnitStats
from core.routing.ports import InputGroup, RefusedRecord
from tests.conftest import isolated_settings
from tests.unit.test_routing_classify import NOW_MS, event

LANE = "default"
SOURCE = "default.events.all"
DLQ = "default.events.dlq"
COMMON = "default.events.common"
Offsets = dict[tuple[str, int], int]
Refuse = Callable[[OutRecord], str | None]
Decode = Callable[[bytes], dict[str, Any]]


def topic(name: str) -> str:
    return f"default.event.{name}"


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class FakeGroup:
    def __init__(self) -> None:
        self.commits: list[Offsets] = []

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.commits.append(dict(offsets))

    def group_metadata(self) -> object:
        return "member-1"


class FakeSession:
    """``visible``: what readers see. ``fail_on[step]``: the next call of that step raises; ``refuse_send``
    and ``refuse_commit`` refuse records before sending or at commit (atomic: the whole unit aborts)."""

    def __init__(self, atomic: bool = True) -> None:
        self.atomic = atomic
        self.calls: list[str] = []
        self.open = False
        self.pending: list[OutRecord] = []
        self.visible: list[OutRecord] = []
        self.committed: list[Offsets] = []
        self.fail_on: dict[str, BaseException] = {}
        self.refuse_send: Refuse = lambda record: None
        self.refuse_commit: Refuse = lambda record: None

    def _step(self, name: str) -> None:
        self.calls.append(name)
        exc = self.fail_on.pop(name, None)
        if exc is not None:
            self.abort(record=False)
            raise exc

    def begin(self) -> None:
        self._step("begin")
        self.open = True

    def send(self, records: Sequence[OutRecord]) -> list[tuple[int, str]]:
        assert self.open or not self.atomic, "a record sent outside a transaction"
        self._step("send")
        refused = [(i, error) for i, r in enumerate(records) if (error := self.refuse_send(r)) is not None]
        self.pending += [r for r in records if self.refuse_send(r) is None]
        return refused

    def commit(self, offsets: Mapping[tuple[str, int], int], group: InputGroup) -> list[RefusedRecord]:
        self._step("commit")
        refused = [
            RefusedRecord(r.topic, r.value, error)
            for r in self.pending
            if (error := self.refuse_commit(r)) is not None
        ]
        if refused and self.atomic:
            self.abort(record=False)
            return refused
        gone = {(r.topic, r.value) for r in refused}
        self.visible += [r for r in self.pending if (r.topic, r.value) not in gone]
        self.pending, self.open = [], False
        if not refused:
            if self.atomic:
                assert group.group_metadata() == "member-1"
            else:
                group.commit(offsets)
            self.committed.append(dict(offsets))
        return refused

    def abort(self, record: bool = True) -> None:
        if record:
            self.calls.append("abort")
        if not self.atomic:  # delivered already (at least once); a purge drops only the unsent
            self.visible += self.pending
        self.pending, self.open = [], False


class FakeProvisioning:
    def __init__(self) -> None:
        self.requested: list[set[str]] = []
        self.ready: list[str] = []
        self.refused: dict[str, str] = {}
        self.on_take: Callable[[], None] = lambda: None

    def request(self, topics: Iterable[str]) -> None:
        self.requested.append(set(topics))

    def take_results(self) -> tuple[list[str], dict[str, str]]:
        self.on_take()
        ready, refused = self.ready, self.refused
        self.ready, self.refused = [], {}
        return ready, refused

    @property
    def asked(self) -> set[str]:
        return set().union(*self.requested)


def src(partition: int, offset: int, name: str = "contest_join", value: bytes | None = None) -> SourceRecord:
    raw = orjson.dumps(event(name)) if value is None else value
    return SourceRecord(b"k", raw, partition, offset, NOW_MS)


class Rig:
    """A path on fakes, with the events of the known type ``contest_join`` ready to send."""

    def __init__(self, atomic: bool = True, decode: Decode = parse_json_event, **settings: Any) -> None:
        values: dict[str, Any] = {"router_commit_interval_s": 1.0, "router_topic_wait_s": 10.0, **settings}
        self.clock = Clock()
        self.session = FakeSession(atomic)
        self.provisioning = FakeProvisioning()
        self.group = FakeGroup()
        self.stats: list[UnitStats] = []
        self.path = LaneCommitPath(
            isolated_settings(**values),
            LANE,
            self.session,
            self.provisioning,
            decode,
            [topic("contest_join")],
            on_committed=self.stats.append,
            clock=self.clock,
            wall_clock=lambda: NOW_MS / 1000,
        )

    def route(self, *batch: SourceRecord) -> None:
        self.path.route(list(batch), self.group)

    def tick(self, after_s: float = 0.0) -> None:
        self.clock.now += after_s
        self.path.tick(self.group)

    def routed(self, name: str) -> list[int]:
        """Offsets of the visible records of ``name``'s topic, in the order sent."""
        return [r.source.offset for r in self.session.visible if r.topic == topic(name)]

    def dead(self) -> list[tuple[int, str]]:
        letters = [r for r in self.session.visible if r.topic == DLQ]
        return [(r.source.offset, dict(r.headers)["reason"].decode()) for r in letters]


@pytest.fixture(params=[True, False], ids=["atomic", "at_least_once"])
def rig(request: pytest.FixtureRequest) -> Rig:
    return Rig(atomic=request.param)


def test_one_unit_per_commit_interval_commits_the_next_offset_of_each_partition(rig: Rig) -> None:
    rig.route(src(0, 10), src(0, 11), src(1, 4))
    rig.tick(0.5)
    rig.route(src(0, 12), src(1, 3))  # offsets within a batch need not be sorted across partitions
    rig.tick(0.49)
    assert rig.session.committed == []
    assert rig.session.calls.count("begin") == 1
    rig.tick(0.01)
    assert rig.session.committed == [{(SOURCE, 0): 13, (SOURCE, 1): 5}]
    assert rig.routed("contest_join") == [10, 11, 4, 12, 3]
    assert [r.source.offset for r in rig.session.visible if r.topic == COMMON] == [10, 11, 4, 12, 3]
    rig.tick(5)  # nothing open: nothing to commit
    rig.route(src(2, 0))
    assert rig.session.committed[1:] == []
    rig.tick(1)
    assert rig.session.committed[1:] == [{(SOURCE, 2): 1}]
    assert [(s.events, s.routed, s.dead) for s in rig.stats] == [(5, 5, 0), (1, 1, 0)]
    if not rig.session.atomic:
        assert rig.group.commits == rig.session.committed
    rig.route(src(3, 0))
    rig.clock.now += 2
    rig.route(src(3, 1), src(3, 2, value=b"{broken"))  # joins the due unit, which is then committed
    assert rig.session.committed[2:] == [{(SOURCE, 3): 3}]
    assert rig.dead() == [(2, "malformed_json")]
    assert rig.stats[2].reasons == {"malformed_json": 1}
    assert (rig.stats[2].events, rig.stats[2].routed, rig.stats[2].dead) == (3, 2, 1)


def test_a_new_type_is_held_in_order_while_other_types_flow(rig: Rig) -> None:
    rig.route(src(0, 0, "team_create"), src(0, 1), src(0, 2, "team_create"))
    assert rig.provisioning.asked == {topic("team_create")}
    assert [
        r.topic for r in rig.session.pending + rig.session.visible if r.topic.startswith("default.event.")
    ] == [topic("contest_join")]
    rig.tick(5)
    rig.route(src(0, 3, "team_create"), src(1, 0))
    rig.tick(4)
    assert rig.session.committed == []  # nothing is committed while records wait
    rig.provisioning.ready.append(topic("team_create"))
    rig.route(src(0, 4, "team_create"))  # released before this later record is sent
    assert rig.session.committed == [{(SOURCE, 0): 5, (SOURCE, 1): 1}]
    assert rig.routed("team_create") == [0, 2, 3, 4]
    assert rig.routed("contest_join") == [1, 0]
    rig.route(src(0, 5, "team_create"))  # ready from now on
    rig.tick(1)
    assert rig.routed("team_create") == [0, 2, 3, 4, 5]
    assert rig.provisioning.asked == {topic("team_create")}
    assert [(s.events, s.routed, s.dead) for s in rig.stats] == [(6, 6, 0), (1, 1, 0)]


def test_a_topic_refused_for_good_dead_letters_its_held_and_later_events(rig: Rig) -> None:
    rig.route(src(0, 0, "bad_type"), src(0, 1), src(0, 2, "bad_type"))
    rig.provisioning.refused[topic("bad_type")] = "policy violation"
    rig.tick(0.1)
    rig.route(src(0, 3, "bad_type"))
    rig.tick(1)
    assert rig.session.committed == [{(SOURCE, 0): 4}]
    assert rig.routed("bad_type") == []
    assert rig.dead() == [(0, TOPIC_CREATE_FAILED), (2, TOPIC_CREATE_FAILED), (3, TOPIC_CREATE_FAILED)]
    details = [dict(r.headers)["detail"] for r in rig.session.visible if r.topic == DLQ]
    assert all(b"policy violation" in detail for detail in details)
    # a dead-lettered event has no projection: only the routed one is in the common topic
    assert [r.source.offset for r in rig.session.visible if r.topic == COMMON] == [1]
    stats = rig.stats[0]
    assert (stats.events, stats.routed, stats.dead) == (4, 1, 3)
    assert stats.reasons == {TOPIC_CREATE_FAILED: 3}


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


def test_records_held_past_the_topic_wait_fail_the_path_until_discarded(rig: Rig) -> None:
    rig.route(src(0, 0), src(0, 1, "team_create"))
    rig.tick(10)
    with pytest.raises(TransientError, match="waited"):
        rig.tick(0.5)
    rig.provisioning.ready.append(topic("team_create"))  # too late: nothing more is committed
    with pytest.raises(TerminalError):
        rig.tick(5)
    with pytest.raises(TerminalError):
        rig.route(src(0, 2))
    rig.path.flush(rig.group)  # a revoke or stop after the failure aborts
    assert rig.session.calls[-1] == "abort"
    assert rig.session.committed == []
    rig.path.discard()
    rig.route(src(0, 0), src(0, 1, "team_create"))  # read again from the committed offsets
    rig.tick(1)
    assert rig.session.committed == [{(SOURCE, 0): 2}]
    if rig.session.atomic:  # the aborted unit left nothing behind
        assert rig.routed("contest_join") == [0]
        assert rig.routed("team_create") == [1]


def test_a_full_unit_waits_for_its_topics_then_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit_module, "HOLD_POLL_S", 0.0)
    rig = Rig(router_max_pending_events=2)
    polls = []

    def later() -> None:
        rig.clock.now += 1
        polls.append(rig.clock.now)
        if len(polls) == 4:
            rig.provisioning.ready.append(topic("team_create"))

    rig.provisioning.on_take = later
    rig.route(src(0, 0, "team_create"), src(0, 1, "team_create"))
    assert rig.session.committed == [{(SOURCE, 0): 2}]
    assert rig.routed("team_create") == [0, 1]
    rig.provisioning.on_take = lambda: setattr(rig.clock, "now", rig.clock.now + 1)
    with pytest.raises(TransientError, match="waited"):  # never ready: backs off after the topic wait
        rig.route(src(0, 2, "other_type"), src(0, 3, "other_type"))
    assert rig.session.committed == [{(SOURCE, 0): 2}]


def test_a_type_admitted_in_a_failed_batch_is_still_requested_after_discard() -> None:
    def decode(raw: bytes) -> dict[str, Any]:
        if raw == b"registry-away":
            raise TransientError("schema registry away")
        return parse_json_event(raw)

    rig = Rig(decode=decode)
    with pytest.raises(TransientError):
        rig.route(src(0, 0, "team_create"), src(0, 1, value=b"registry-away"))
    rig.path.discard()
    rig.route(src(0, 0, "team_create"))
    assert topic("team_create") in rig.provisioning.asked
    rig.provisioning.ready.append(topic("team_create"))
    rig.tick(1)
    assert rig.routed("team_create") == [0]


@pytest.mark.parametrize("step", ["begin", "send", "commit"])
def test_a_failing_session_step_commits_nothing_until_discarded(rig: Rig, step: str) -> None:
    rig.session.fail_on[step] = TransientError(f"{step} timed out")

    def route_and_commit() -> None:
        rig.route(src(0, 0), src(1, 0))
        rig.tick(1)

    with pytest.raises(TransientError, match=step):
        route_and_commit()
    for attempt in (lambda: rig.tick(5), lambda: rig.route(src(0, 1))):
        with pytest.raises(TerminalError):
            attempt()
    rig.path.flush(rig.group)  # a revoke after the failure: aborted, not committed
    assert rig.session.committed == []
    assert rig.stats == []
    rig.path.discard()
    rig.route(src(0, 0), src(1, 0))
    rig.path.flush(rig.group)  # a revoke commits an open unit at once
    assert rig.session.committed == [{(SOURCE, 0): 1, (SOURCE, 1): 1}]
    if rig.session.atomic:
        assert rig.routed("contest_join") == [0, 0]


def test_flush_aborts_a_unit_that_still_waits_for_a_topic(rig: Rig) -> None:
    rig.route(src(0, 0), src(0, 1, "team_create"))
    rig.path.flush(rig.group)
    assert rig.session.committed == []
    assert rig.session.calls[-1] == "abort"
    assert rig.path.pending_events == 0
    rig.path.flush(rig.group)  # nothing open: nothing to do
    assert rig.session.calls.count("abort") == 1


def test_records_refused_at_commit_are_dead_lettered_and_the_unit_committed(rig: Rig) -> None:
    big = orjson.dumps(event(properties={"pad": "x" * 100}))
    rig.session.refuse_commit = lambda r: "MSG_SIZE_TOO_LARGE" if r.value == big and r.topic != DLQ else None
    rig.route(src(0, 0), src(0, 1, value=big), src(0, 2))
    rig.tick(1)
    assert rig.session.committed == [{(SOURCE, 0): 3}]
    assert rig.routed("contest_join") == [0, 2]
    assert rig.dead() == [(1, PRODUCE_REFUSED)]
    if rig.session.atomic:  # aborted, then the unit is sent again without the refused record
        assert rig.session.calls == ["begin", "send", "commit", "begin", "send", "commit"]
        # 2 routed + their 2 projections + 1 dead letter, once each: the refused event's projection
        # goes with it (an event is routed and projected, or dead-lettered)
        assert len(rig.session.visible) == 5
        assert sum(r.topic == COMMON for r in rig.session.visible) == 2
    else:  # delivered already: only the dead letter is sent
        assert rig.session.calls == ["begin", "send", "commit", "send", "commit"]
        assert [r.topic for r in rig.session.visible[-1:]] == [DLQ]
    stats = rig.stats[0]
    assert (stats.events, stats.dead, stats.reasons) == (3, 1, {PRODUCE_REFUSED: 1})


def test_identical_refused_records_are_all_dead_lettered(rig: Rig) -> None:
    big = orjson.dumps(event(properties={"pad": "x" * 100}))  # a producer's retry sent it thrice
    rig.session.refuse_commit = lambda r: "MSG_SIZE_TOO_LARGE" if r.value == big and r.topic != DLQ else None
    rig.route(src(0, 0, value=big), src(0, 1, value=big), src(0, 2, value=big))
    rig.tick(1)
    assert rig.session.committed == [{(SOURCE, 0): 3}]
    assert rig.dead() == [(0, PRODUCE_REFUSED), (1, PRODUCE_REFUSED), (2, PRODUCE_REFUSED)]
    assert rig.session.calls.count("commit") == 2


def test_a_dead_letter_refused_at_commit_is_terminal(rig: Rig) -> None:
    rig.session.refuse_commit = lambda r: "RECORD_LIST_TOO_LARGE" if r.topic == DLQ else None
    rig.route(src(0, 0), src(0, 1, value=b"not json"))
    with pytest.raises(TerminalError, match="dead-letter"):
        rig.tick(1)
    with pytest.raises(TerminalError):
        rig.tick(1)
    assert rig.session.committed == []


def test_records_refused_before_sending_are_dead_lettered_unless_the_letter_is_too(rig: Rig) -> None:
    rig.session.refuse_send = lambda r: "too large" if r.topic == COMMON and r.source.offset == 1 else None
    rig.route(src(0, 0), src(0, 1))
    rig.tick(1)
    assert rig.session.committed == [{(SOURCE, 0): 2}]
    assert rig.dead() == [(1, PRODUCE_REFUSED)]
    assert rig.stats[0].reasons == {PRODUCE_REFUSED: 1}
    rig.session.refuse_send = lambda r: "too large" if r.source.offset == 3 else None
    with pytest.raises(TerminalError, match="dead letter"):
        rig.route(src(0, 2), src(0, 3))
    rig.path.flush(rig.group)
    assert rig.session.committed == [{(SOURCE, 0): 2}]
