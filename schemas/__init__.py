"""The data contract: Avro schemas (``*.avsc``) and their loaders — the very bottom layer.

``envelope.avsc`` is the one event envelope every producer writes; ``events/<table>.avsc`` are
optional per-event schemas that fix a lake table's column types instead of inferring them.
Nothing here imports any other Highway package; validation and encoding live in ``core``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS_DIR = Path(__file__).resolve().parent
ENVELOPE_PATH = SCHEMAS_DIR / "envelope.avsc"
EVENT_SCHEMAS_DIR = SCHEMAS_DIR / "events"


@cache
def envelope_schema() -> dict[str, Any]:
    """The envelope schema as parsed JSON (with its logical types), as registered in a registry."""
    schema: dict[str, Any] = json.loads(ENVELOPE_PATH.read_text())
    return schema


def event_schemas(directory: Path = EVENT_SCHEMAS_DIR) -> dict[str, dict[str, Any]]:
    """``events/<table>.avsc`` by table name, parsed JSON (sorted by name)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.avsc"))}
