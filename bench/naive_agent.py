"""The naive faust router the benchmark compares with: one ``await topic.send(...)`` per event.

Run as ``python -m bench.naive_agent SOURCE_TOPIC`` with ``HIGHWAY_*`` settings in the environment;
it forwards every record of SOURCE_TOPIC unchanged (value, key) to ``SOURCE_TOPIC.naive`` — less
work than the router does (no parsing, no projection), so the router/naive ratio is conservative.
"""

from __future__ import annotations

import sys

import faust
from faust.worker import Worker

from connectors.kafka_config import faust_broker_url, faust_credentials
from core.settings_load import load_settings


def naive_app(source_topic: str) -> faust.App:
    settings = load_settings()
    app = faust.App(
        f"{settings.app_id}-naive",
        broker=faust_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        autodiscover=False,
        store="memory://",
        datadir=str(settings.state_dir / "naive-faust"),
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
    )
    source = app.topic(
        source_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    target = app.topic(
        f"{source_topic}.naive",
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await target.send(key=event.key, value=event.value)

    app.agent(source, name="naive-forward")(forward)
    return app


def main() -> None:
    app = naive_app(sys.argv[1])
    Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
