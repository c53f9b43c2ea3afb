"""The browser snippet ships in the package, stays small and dependency-free."""

from __future__ import annotations

import re

from connectors.collector_js import snippet_bytes


def test_the_snippet_is_package_data_small_and_self_contained() -> None:
    source = snippet_bytes().decode()
    assert len(source.splitlines()) < 200
    assert not re.search(r"^\s*(import|export)\s|\brequire\(", source, re.M), "the snippet must load alone"
    for api in ("init: init", "track: track", "flush: flush", "identify:"):
        assert api in source
    # The fields the router requires of every event are all set by track().
    for field in (
        "event_name",
        "event_id",
        "user_id",
        "session_id",
        "lane",
        "platform",
        "app_version",
        "device_id",
        "client_ts",
        "properties",
    ):
        assert re.search(rf"\b{field}:", source), field
