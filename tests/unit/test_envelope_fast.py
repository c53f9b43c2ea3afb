"""The JSON fast path agrees with the validating path on every event, good, bad or hostile.

The fast path (msgspec) may only accept what the validating path (orjson + ``validate_event``)
accepts unchanged, with the same values; everything else it hands over. These tests throw
thousands of generated events at both and compare the outcomes, then compare whole classified
batches with the fast path on and off.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections import Counter
from typing import Any

import orjson

from core.envelope import (
    DEFAULT_LIMITS,
    common_projection,
    normalise_event,
    parse_json_event,
    validate_event,
)
from core.envelope_fast import decode_fast, projection_json, projection_json_of
from core.errors import SchemaError
from core.routing.classify import BatchClassifier, ClassifiedBatch
from core.routing.gate import NewTypeGate
from core.settings import Settings
from tests.unit.test_routing_classify import NOW_MS, records

VALUES: list[Any] = [
    None, True, False, 0, -1, 7, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 1.5, 1e300, -0.0,
    float("nan"), "", "x", "é\u2028\x00", "0b8f3a52-1c4e-4d6b-9a71-3f2e8c5d7a10",
    "0B8F3A52-1C4E-4D6B-9A71-3F2E8C5D7A10", "0b8f3a52-1c4e-4d6b-9a71-3f2e8c5d7a10\n", [], {}, [1, "a"],
    {"a": {"b": [1, {"c": None}]}},
]  # fmt: skip
FIELDS = [
    "event_name", "event_id", "user_id", "session_id", "lane", "platform", "app_version",
    "device_id", "client_ts", "server_ts", "properties",
]  # fmt: skip


def base_event(rng: random.Random) -> dict[str, Any]:
    return {
        "event_name": rng.choice(["contest_join", "équipe", "a.b", "x" * 40]),
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "user_id": rng.choice([f"u{rng.randrange(10**6)}", rng.randrange(10**12)]),
        "session_id": "s1",
        "lane": "default",
        "platform": rng.choice(["android", "ios", "web"]),
        "app_version": "5.1.0",
        "device_id": "d1",
        "client_ts": NOW_MS - rng.randrange(10**6),
        "server_ts": NOW_MS + rng.choice([-(10**10), -1000, 0, 10**6, 10**9]),
        "properties": random_properties(rng),
    }


def random_properties(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for i in range(rng.choice([0, 1, 3, 8])):
        roll = rng.random()
        if roll < 0.1 and depth < 3:
            props[f"n{i}"] = random_properties(rng, depth + 1)
        elif roll < 0.15 and depth < 3:
            props[f"l{i}"] = [random_properties(rng, depth + 1), 1, "x"]
        else:
            props[f"p{i}"] = rng.choice([None, True, 3, -(2**63), 2.5, "s", "ü"])
    return props


def mutate(event: dict[str, Any], rng: random.Random) -> None:
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        field = rng.choice(FIELDS)
        roll = rng.random()
        if roll < 0.2:
            event.pop(field, None)
        elif roll < 0.3:
            event[f"extra_{field}"] = copy.deepcopy(rng.choice(VALUES))
        elif roll < 0.4 and isinstance(event.get("properties"), dict):
            event["properties"][rng.choice(["p0", "q", "n"])] = copy.deepcopy(rng.choice(VALUES))
        else:
            event[field] = copy.deepcopy(rng.choice(VALUES))


def serialise(event: dict[str, Any], rng: random.Random) -> bytes:
    text = json.dumps(
        event, ensure_ascii=rng.random() < 0.5, separators=rng.choice([(",", ":"), (", ", ": ")])
    )
    raw = text.encode("utf-8", "surrogatepass")
    roll = rng.random()
    if roll < 0.05:
        raw = raw[: rng.randrange(len(raw))]
    elif roll < 0.1:
        at = rng.randrange(len(raw))
        raw = raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1 :]
    elif roll < 0.15:
        raw = raw.replace(b"{", b'{"user_id": 5, "server_ts": "x", ', 1)  # duplicate keys, last wins
    elif roll < 0.18:
        raw = rng.choice([b"\xef\xbb\xbf", b" \n\t", b"\x00"]) + raw
    elif roll < 0.2:
        raw = raw + rng.choice([b" ", b"x", b"\x00", b"{}"])
    elif roll < 0.23:
        raw = raw.replace(
            b'"s1"', rng.choice([b'"\\ud800"', b'"\\ud83d\\ude00"', b'"\\u0000"', b'"\xed\xa0\x80"'])
        )
    return raw


def corpus(count: int, seed: int = 9) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        event = base_event(rng)
        mutate(event, rng)
        out.append(serialise(event, rng))
    return out


def checked(raw: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The validating path: (the accepted event or None, whether it had to be normalised)."""
    try:
        event = parse_json_event(raw)
        changed = normalise_event(event, NOW_MS)
        validate_event(event, DEFAULT_LIMITS)
    except SchemaError:
        return None, False
    return event, changed


def test_fast_path_accepts_a_subset_with_identical_values() -> None:
    outcomes: Counter[str] = Counter()
    for raw in corpus(6000):
        fast = decode_fast(raw)
        event, changed = checked(raw)
        if fast is None:
            outcomes["fallback accepts" if event is not None else "both reject"] += 1
            continue
        outcomes["fast accepts"] += 1
        assert event is not None, raw
        assert not changed, raw
        assert orjson.dumps(fast.properties) == orjson.dumps(event.get("properties", {})), raw
        projection = projection_json(fast)
        assert projection == projection_json_of(event), raw
        assert orjson.loads(projection) == common_projection(event), raw
    assert min(outcomes.values()) > 500, outcomes


def flattened(out: ClassifiedBatch) -> list[tuple[Any, ...]]:
    return [
        (r.topic, r.key, r.value, r.timestamp_ms, r.headers, r.source.offset)
        for r in out.routed + out.projections + out.dead
    ]


def test_classified_batches_are_identical_with_and_without_the_fast_path() -> None:
    batch = records(corpus(4000, seed=11))
    for policy in ("dead_letter", "restamp"):
        settings = Settings(router_timestamp_policy=policy, router_max_property_keys=12)
        outs = [
            BatchClassifier(
                settings, "default", NewTypeGate(1000, 5000), parse_json_event, json_fast_path=fast
            ).classify(batch, NOW_MS)
            for fast in (True, False)
        ]
        assert flattened(outs[0]) == flattened(outs[1])
        assert outs[0].reasons == outs[1].reasons
        assert outs[0].new_topics == outs[1].new_topics
        assert len(outs[0].routed) > 500
        assert outs[0].reasons["too_many_properties"] > 0
        out_of_bounds = outs[0].reasons["future_timestamp"] + outs[0].reasons["stale_timestamp"]
        assert (out_of_bounds > 100) if policy == "dead_letter" else (out_of_bounds == 0)
