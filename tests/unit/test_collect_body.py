"""The collector's body handling: formats, gzip with an early-stopping size cap, header refusals."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from core.collect.body import BodyError, Unparsable, check_headers, decode, gunzip_bounded, parse

LIMIT = 64 * 1024


def event(i: int) -> dict[str, object]:
    return {"event_name": "click", "user_id": f"u{i}", "event_id": f"e{i}"}


def test_array_ndjson_and_single_object_give_the_same_events() -> None:
    events = [event(i) for i in range(3)]
    array = orjson.dumps(events)
    ndjson = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    assert parse(array, "application/json") == events
    assert parse(ndjson, "application/x-ndjson") == events
    assert parse(ndjson, "text/plain; charset=utf-8") == events  # sendBeacon's type, NDJSON inside
    assert parse(orjson.dumps(events[0]), None) == [events[0]]


def test_a_bad_ndjson_line_is_kept_as_unparsable_at_its_index() -> None:
    body = orjson.dumps(event(0)) + b"\n{not json\n\n" + orjson.dumps(event(2))
    items = parse(body, "application/x-ndjson")
    assert items[0] == event(0)
    assert isinstance(items[1], Unparsable)
    assert items[2] == event(2)


@pytest.mark.parametrize("body", [b"", b"   ", b"[1, 2", b"not json at all"])
def test_an_unreadable_document_is_a_400(body: bytes) -> None:
    with pytest.raises(BodyError) as caught:
        parse(body, "application/json")
    assert caught.value.status == 400


def test_gzip_round_trips_and_concatenated_members_are_one_stream() -> None:
    assert decode(gzip.compress(b"[1]"), "gzip", LIMIT) == b"[1]"
    assert gunzip_bounded(gzip.compress(b"ab") + gzip.compress(b"cd"), LIMIT) == b"abcd"


def test_a_zip_bomb_stops_at_the_limit_without_inflating_everything() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < LIMIT * 2
    inflated = 0
    real = zlib.decompressobj

    class Counting:
        def __init__(self, wbits: int = 15) -> None:
            self.inner = real(wbits=wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            nonlocal inflated
            out = self.inner.decompress(data, max_length)
            inflated += len(out)
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    zlib.decompressobj = Counting  # type: ignore[assignment]
    try:
        with pytest.raises(BodyError) as caught:
            gunzip_bounded(bomb, LIMIT)
    finally:
        zlib.decompressobj = real
    assert caught.value.status == 413
    assert inflated <= LIMIT + 1


@pytest.mark.parametrize(("data", "status"), [(b"not gzip", 400), (gzip.compress(b"[1, 2, 3]")[:-12], 400)])
def test_broken_gzip_is_a_400(data: bytes, status: int) -> None:
    with pytest.raises(BodyError) as caught:
        gunzip_bounded(data, LIMIT)
    assert caught.value.status == status


def test_raw_bodies_over_the_limit_are_413() -> None:
    with pytest.raises(BodyError) as caught:
        decode(b"x" * (LIMIT + 1), None, LIMIT)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("content_type", "encoding", "length", "status"),
    [
        ("application/xml", None, 10, 415),
        ("application/json", "br", 10, 415),
        ("application/json", None, LIMIT + 1, 413),
    ],
)
def test_headers_refuse_before_reading(
    content_type: str, encoding: str | None, length: int, status: int
) -> None:
    with pytest.raises(BodyError) as caught:
        check_headers(content_type, encoding, length, LIMIT)
    assert caught.value.status == status


def test_accepted_headers_pass() -> None:
    for content_type in ("application/json", "application/x-ndjson", "text/plain;charset=UTF-8", None):
        check_headers(content_type, "gzip", 100, LIMIT)
    check_headers("application/json", None, None, LIMIT)
