"""`highway topics`: a lane's per-event topics and their partitions; grow the hot ones.

New per-event topics get ``topic_event_partitions`` partitions (1 by default), so the partitions
the router writes to grow with the number of types, not as types times 6, and each transaction touches
few. A type that becomes hot gets more partitions with ``highway topics grow``. Events are keyed by
``user_id``, so one user's events stay in order within a partition; while a topic grows, a user's
next events may land on another partition than their earlier ones, so consumers may see that
user's events around the change out of order (never lost or duplicated).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from connectors.kafka_admin import KafkaAdmin
from core.errors import HighwayError
from core.routing.naming import event_topic_for
from highway.cli.common import console, fail, state


def list_topics(
    ctx: typer.Context,
    lane: Annotated[str | None, typer.Option(help="lane (default: the first configured)")] = None,
) -> None:
    """The lane's per-event topics with their partition counts."""
    settings = state(ctx).settings()
    lane = lane or settings.lanes[0]
    admin = KafkaAdmin(settings)
    try:
        names = admin.list_topics(settings.event_topic_pattern(lane))
        table = Table(title=f"per-event topics of lane {lane}")
        table.add_column("topic")
        table.add_column("partitions", justify="right")
        for name in names:
            table.add_row(name, str(admin.partitions(name)))
    except HighwayError as exc:
        raise fail(exc) from exc
    console.print(table)


def grow(
    ctx: typer.Context,
    event_name: Annotated[str, typer.Argument(help="the event type, as producers name it")],
    partitions: Annotated[int, typer.Option("--partitions", "-p", min=2, help="new partition count")],
    lane: Annotated[str | None, typer.Option(help="lane (default: the first configured)")] = None,
) -> None:
    """Give a hot event type's topic more partitions (Kafka never shrinks a topic)."""
    settings = state(ctx).settings()
    lane = lane or settings.lanes[0]
    topic = event_topic_for(settings, lane, event_name)
    admin = KafkaAdmin(settings)
    try:
        current = admin.partitions(topic)
        if current == 0:
            raise typer.BadParameter(f"{topic} does not exist (no {event_name!r} event routed yet)")
        if partitions <= current:
            raise typer.BadParameter(f"{topic} has {current} partitions already; Kafka cannot shrink it")
        admin.grow_partitions(topic, partitions)
    except HighwayError as exc:
        raise fail(exc) from exc
    console.print(f"{topic}: {current} → {partitions} partitions")


def register(app: typer.Typer) -> None:
    topics = typer.Typer(help="per-event topics: list them, grow a hot one", no_args_is_help=True)
    topics.command("list")(list_topics)
    topics.command("grow")(grow)
    app.add_typer(topics, name="topics")
