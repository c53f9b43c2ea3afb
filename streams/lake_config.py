"""The lake stage's consumer group, subscription and client configuration, and its schema overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from connectors.kafka_config import confluent_config, subscription_regex
from core.lake.schema import TableSchema, schema_from_avro
from core.settings import Settings
from schemas import EVENT_SCHEMAS_DIR, event_schemas

SESSION_TIMEOUT_MS = 6_000


def load_overrides(directory: Path = EVENT_SCHEMAS_DIR) -> dict[str, TableSchema]:
    """Avro schemas in ``schemas/events/<table>.avsc`` that override inference for that table."""
    return {table: schema_from_avro(schema) for table, schema in event_schemas(directory).items()}


def lake_group_id(settings: Settings) -> str:
    """The lake consumer group; distinct from every faust app group (which use their own protocol)."""
    return f"{settings.app_id}.lake-sink"


def topic_regex(settings: Settings) -> str:
    """librdkafka regex subscription matching every lane's per-event topics and its common topic
    (the table ``core.lake.layout.COMMON_TABLE``)."""
    patterns = [settings.event_topic_pattern(lane) for lane in settings.lanes]
    return subscription_regex(patterns + [re.escape(settings.common_topic(lane)) for lane in settings.lanes])


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Manual offsets (committed by the commit path only); a long poll interval because a flush
    blocks the consumer thread for as long as S3 is away."""
    return confluent_config(
        settings,
        **{
            "group.id": lake_group_id(settings),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": int(settings.lake_topic_rescan_s * 1000),
            "max.poll.interval.ms": 600_000,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            # A new topic adds its partitions without revoking everyone else's (their buffers).
            "partition.assignment.strategy": "cooperative-sticky",
            "heartbeat.interval.ms": 1_000,
            "fetch.max.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 32 * 1024,
        },
    )
