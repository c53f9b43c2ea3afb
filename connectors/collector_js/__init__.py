"""The browser snippet ``highway.js`` (package data), for the collector to serve at ``/v1/highway.js``.

It lives in ``connectors`` because it is an edge client of the collector, like
:mod:`connectors.collector_client`, and so that the collector's route in ``streams`` may read it
without importing upwards. docs/collector-clients.md documents its API.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

SNIPPET_NAME = "highway.js"
SNIPPET_CONTENT_TYPE = "text/javascript; charset=utf-8"


@cache
def snippet_bytes() -> bytes:
    """The snippet's source, read once from the installed package."""
    return files(__name__).joinpath(SNIPPET_NAME).read_bytes()
