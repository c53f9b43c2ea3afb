"""The collector over real HTTP on loopback and the real broker.

Every event answered 200 is in ``<lane>.events.all`` exactly once per send; refusals write nothing;
neither a kill -9 nor a SIGTERM of the collector under load loses an event that got a 200 (the
client resends what was not answered; copies are reported, not hidden).
"""

from __future__ import annotations

import gzip
import os
import signal
import threading
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from connectors.collector_js import snippet_bytes
from core.routing.naming import event_topic_for
from tests.integration.collector_support import (
    KEY,
    ORIGIN,
    CollectorWorker,
    RetryingSender,
    collector_settings,
    id_counts,
    make_events,
    topic_events,
)
from tests.support import WorkerProcess, committed_counts, health, wait_until

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {KEY}"}


def post(worker: CollectorWorker, body: bytes, headers: dict[str, str], **params: str) -> httpx.Response:
    return httpx.post(worker.events_url, content=body, headers=headers, params=params, timeout=30)


def test_every_200_event_is_in_the_topic_once_in_every_body_form(make_settings: Any) -> None:
    settings = collector_settings(make_settings)
    lane = settings.lanes[0]
    with CollectorWorker(settings) as worker:
        worker.wait_healthy()
        sent: list[str] = []
        forms = [
            (orjson.dumps(make_events(50)), {**AUTH, "Content-Type": "application/json"}, {}),
            (
                b"\n".join(orjson.dumps(e) for e in make_events(20)),
                {"X-Highway-Key": KEY, "Content-Type": "application/x-ndjson"},
                {"lane": lane},
            ),
            (gzip.compress(orjson.dumps(make_events(30))), {**AUTH, "Content-Encoding": "gzip"}, {}),
            (orjson.dumps(make_events(1)[0]), {"Content-Type": "text/plain"}, {"key": KEY}),
        ]
        request_ids = set()
        for body, headers, params in forms:
            response = post(worker, body, headers, **params)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["rejected"] == []
            assert answer["request_id"] == response.headers["X-Request-Id"]
            request_ids.add(answer["request_id"])
            raw = gzip.decompress(body) if headers.get("Content-Encoding") else body
            text = raw.strip()
            events = orjson.loads(text) if text[:1] == b"[" else [orjson.loads(x) for x in text.split(b"\n")]
            sent += [e["event_id"] for e in events]
        stored = topic_events(settings)
        assert sorted(e["event_id"] for e in stored) == sorted(sent)  # each exactly once
        assert {e["request_id"] for e in stored} == request_ids
        assert all(e["server_ts"] > 1_000_000_000_000 for e in stored)  # the client's 1 overwritten
        assert {e["lane"] for e in stored} == {lane}  # the key's lane fills the missing field
        metrics = httpx.get(f"{worker.base_url}/metrics", timeout=5).text
        assert 'highway_collector_requests_total{code="200"} 4.0' in metrics
        assert f"highway_collector_events_total {len(sent)}.0" in metrics
        health = httpx.get(f"{worker.base_url}/health", timeout=5).json()
        assert health["stages"]["collector"]["status"] == "ok"
        snippet = httpx.get(f"{worker.base_url}/v1/highway.js", timeout=5)
        assert snippet.status_code == 200
        assert snippet.content == snippet_bytes()
        assert snippet.headers["Content-Type"].startswith("text/javascript")
        quick = make_events(10, tag="async")
        response = post(worker, orjson.dumps(quick), AUTH, **{"async": "1"})
        assert response.status_code == 202
        assert response.json()["accepted"] == 10
        wait_until(lambda: id_counts(settings)["async-9"] == 1, 30, 0.5, "async events acknowledged")


def test_refusals_write_nothing_and_partial_batches_write_only_the_good_events(make_settings: Any) -> None:
    settings = collector_settings(make_settings, collector_max_body_bytes=64 * 1024)
    other_lane = "zz" + settings.lanes[0]
    good = orjson.dumps(make_events(5))
    with CollectorWorker(settings) as worker:
        worker.wait_healthy()
        refusals = [
            (good, {}, {}, 401),
            (good, {"Authorization": "Bearer wrong"}, {}, 401),
            (good, AUTH, {"lane": other_lane}, 401),
            (b"x" * (65 * 1024), AUTH, {}, 413),
            (
                gzip.compress(b"[" + b" " * (10 * 1024 * 1024) + b"]"),
                {**AUTH, "Content-Encoding": "gzip"},
                {},
                413,
            ),
            (b"[{not json", AUTH, {}, 400),
            (orjson.dumps([{"event_name": "x"}, 5]), AUTH, {}, 400),
            (good, {**AUTH, "Content-Type": "application/xml"}, {}, 415),
            (good, {**AUTH, "Origin": "https://evil.example"}, {}, 403),
        ]
        for body, headers, params, status in refusals:
            response = post(worker, body, headers, **params)
            assert response.status_code == status, (status, response.text)
            assert "error" in response.json()
        mixed = make_events(4, tag="mixed")
        del mixed[1]["event_id"]
        mixed[2]["event_name"] = ""
        response = post(worker, orjson.dumps(mixed), {**AUTH, "Origin": ORIGIN})
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        answer = response.json()
        assert answer["accepted"] == 2
        assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(1, "event_id"), (2, "event_name")]
        preflight = httpx.options(
            worker.events_url,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        evil = httpx.options(worker.events_url, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403
    assert id_counts(settings) == {"mixed-0": 1, "mixed-3": 1}


def _load_until(sender: RetryingSender, condition: Any) -> threading.Thread:
    thread = threading.Thread(target=sender.run)
    thread.start()
    wait_until(condition, 60, 0.05, "some batches answered 200")
    return thread


def test_kill_9_under_load_loses_nothing_that_got_200(make_settings: Any) -> None:
    settings = collector_settings(make_settings)
    batches = [make_events(50, tag=f"k{b}") for b in range(300)]
    worker = CollectorWorker(settings).start()
    try:
        worker.wait_healthy()
        sender = RetryingSender(worker.events_url, batches)
        thread = _load_until(sender, lambda: sender.sent_batches >= 60)
        acked_before_kill = set(sender.acked)
        worker.kill()
        worker.start()
        worker.wait_healthy()
        thread.join(300)
        assert not thread.is_alive()
    finally:
        worker.stop()
    counts = id_counts(settings)
    everything = {e["event_id"] for batch in batches for e in batch}
    missing = everything - set(counts)
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"kill -9: {len(everything)} events, {sender.retries} resends, {duplicates} duplicates, "
        f"answers {dict(sender.statuses)}"
    )
    assert not missing, f"{len(missing)} events that got a 200 are not in the topic"
    assert acked_before_kill <= set(counts)
    assert sender.sent_batches == len(batches)


def test_sigterm_drains_and_loses_nothing_that_got_200(make_settings: Any) -> None:
    settings = collector_settings(make_settings)
    batches = [make_events(50, tag=f"t{b}") for b in range(2000)]
    worker = CollectorWorker(settings).start()
    worker.wait_healthy()
    sender = RetryingSender(worker.events_url, batches, threads=4)
    thread = threading.Thread(target=sender.run, kwargs={"deadline_s": 20.0})
    thread.start()
    wait_until(lambda: sender.sent_batches >= 40, 60, 0.05, "some batches answered 200")
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGTERM)
    assert worker.proc.wait(60) == 0
    thread.join(60)
    acked = set(sender.acked)
    counts = id_counts(settings)
    assert acked, "nothing was answered 200 before the stop"
    assert acked <= set(counts), f"{len(acked - set(counts))} events that got a 200 are lost"
    assert sender.sent_batches < len(batches)  # the stop really interrupted the load


def test_a_broker_away_is_a_503_with_retry_after_and_the_resend_lands(
    make_settings: Any, local_stack: Any
) -> None:
    if not local_stack.kafka.restartable:
        pytest.skip("the broker is external (HIGHWAY_KAFKA_BOOTSTRAP): this test must restart it")
    settings = collector_settings(make_settings)
    events = make_events(50, tag="away")
    with CollectorWorker(settings) as worker:
        worker.wait_healthy()
        wait_until(worker.faust_ready, 60, 0.2, "faust started")
        assert post(worker, orjson.dumps(make_events(5)), AUTH).status_code == 200
        local_stack.kafka.stop()
        try:
            response = post(worker, orjson.dumps(events), AUTH)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert health(worker)[1]["stages"]["collector"]["status"] == "degraded"
        finally:
            local_stack.kafka.start()

        def resend() -> httpx.Response | None:
            answer = post(worker, orjson.dumps(events), AUTH)
            return answer if answer.status_code == 200 else None

        resent = wait_until(resend, 120, 1.0, "the resend answered 200 once the broker is back")
        assert resent.json()["accepted"] == 50
    counts = id_counts(settings)
    assert all(counts[e["event_id"]] >= 1 for e in events)


def test_the_router_routes_what_the_collector_wrote(make_settings: Any) -> None:
    """Collector output is a valid envelope: a worker with both roles routes it, nothing dead-lettered."""
    settings = collector_settings(make_settings)
    lane = settings.lanes[0]
    events = [
        {
            "event_name": ("click", "view")[i % 2],
            "event_id": str(uuid.uuid4()),
            "user_id": i,  # integers are keys too; the router normalises them
            "session_id": "s",
            "platform": "web",
            "app_version": "1.0",
            "device_id": "d",
            "client_ts": int(time.time() * 1000),
            "properties": {"i": i},
        }
        for i in range(20)
    ]
    topics = [event_topic_for(settings, lane, name) for name in ("click", "view")]
    with WorkerProcess(settings, roles="router,collector") as worker:
        worker.wait_healthy()
        response = httpx.post(
            f"{worker.base_url}/v1/events", content=orjson.dumps(events), headers=AUTH, timeout=30
        )
        assert response.status_code == 200, response.text

        def routed() -> bool:
            return sum(committed_counts(settings, topics).values()) >= 20

        wait_until(routed, 120, 1.0, "the collector's events routed to their per-event topics")
    counts = committed_counts(settings, [*topics, settings.dlq_topic(lane)])
    assert counts[settings.dlq_topic(lane)] == 0
    assert sum(counts[topic] for topic in topics) == 20


def test_the_python_client_delivers_through_the_real_collector(make_settings: Any) -> None:
    from connectors.collector_client import CollectorClient

    settings = collector_settings(make_settings)
    events = make_events(2_000, tag="client")
    with CollectorWorker(settings) as worker:
        worker.wait_healthy()
        with CollectorClient(worker.base_url, KEY, settings.lanes[0], batch_size=500) as client:
            client.send(events)
            client.flush(60)
        assert client.accepted == len(events)
        assert client.rejected == []
    assert id_counts(settings) == {event["event_id"]: 1 for event in events}
