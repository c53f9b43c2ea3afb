"""The analytics queries (``core.analytics``) run by DuckDB over a lane's common table, either format.

Each call opens the lake as ``highway query`` does (``connectors.lake_query``: one view, the common
table's, within ``lake_query_timeout_s``) and runs the built SQL. A lane whose common table does not
exist yet (nothing routed since the lake started storing it) answers as an empty table would.
Iceberg scans read only the columns the analytics use, and a user's history only that user's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from connectors.glue import glue_table_name
from connectors.iceberg_catalog import table_identifier
from connectors.kafka_admin import KafkaAdmin
from connectors.lake_fs import LakeStore
from connectors.lake_query import lake_connection, within_deadline
from connectors.producer import EventProducer
from core.analytics.funnel import funnel_result, funnel_sql
from core.analytics.params import FunnelSpec, PathSpec
from core.analytics.paths import paths_result, paths_sql
from core.analytics.segment import segment_sql
from core.analytics.sql import ATHENA, Source, literal, quote
from core.analytics.users import history_result, last_events_sql, summary_sql
from core.lake.layout import COMMON_TABLE
from core.settings import Settings

COMMON_COLUMNS = (
    "event_name", "event_id", "user_id", "session_id", "lane", "platform", "app_version", "device_id",
)  # fmt: skip
_TIMES = ("client_ts", "server_ts")
_PARTITIONS = ("dt", "hour")
Rows = tuple[list[str], list[tuple[Any, ...]]]


def empty_common_table() -> pa.Table:
    """The common table's columns without rows (the view of a lane that has none yet)."""
    fields = [pa.field(name, pa.string()) for name in COMMON_COLUMNS]
    fields += [pa.field(name, pa.timestamp("ms", tz="UTC")) for name in _TIMES]
    fields += [pa.field(name, pa.string()) for name in _PARTITIONS]
    return pa.schema(fields).empty_table()


def common_source(settings: Settings) -> Source:
    return Source(quote(COMMON_TABLE), prune_days=settings.lake_partition_time == "server")


def _common_rows(
    settings: Settings,
    lane: str,
    queries: Sequence[str],
    row_filter: str | None = None,
    timeout_s: float | None = None,
) -> list[Rows]:
    """Columns and rows of each of ``queries`` over the lane's common table, within the deadline."""
    scan: dict[str, Any] = {"columns": [*COMMON_COLUMNS, *_TIMES, *_PARTITIONS]}
    if row_filter is not None:
        scan["row_filter"] = row_filter

    def work(store: LakeStore, track: Callable[[duckdb.DuckDBPyConnection], None]) -> list[Rows]:
        connection, tables = lake_connection(
            settings, lane, mentioned_in=quote(COMMON_TABLE), store=store, iceberg_scan=scan
        )
        track(connection)
        try:
            if COMMON_TABLE not in tables:
                connection.register(COMMON_TABLE, empty_common_table())
            answers = []
            for sql in queries:
                result = connection.execute(sql)
                answers.append(([column[0] for column in result.description or []], result.fetchall()))
            return answers
        finally:
            connection.close()

    return within_deadline(settings, work, timeout_s)


def run_funnel(
    settings: Settings, lane: str, spec: FunnelSpec, timeout_s: float | None = None
) -> dict[str, Any]:
    [(columns, rows)] = _common_rows(
        settings, lane, [funnel_sql(spec, common_source(settings))], None, timeout_s
    )
    return funnel_result(spec, columns, rows)


def run_paths(
    settings: Settings, lane: str, spec: PathSpec, timeout_s: float | None = None
) -> dict[str, Any]:
    [(_, rows)] = _common_rows(settings, lane, [paths_sql(spec, common_source(settings))], None, timeout_s)
    return paths_result(spec, rows)


def user_history(
    settings: Settings, lane: str, user_id: str, last: int, timeout_s: float | None = None
) -> dict[str, Any]:
    source = common_source(settings)
    (_, summary), (_, events) = _common_rows(
        settings,
        lane,
        [summary_sql(user_id, source), last_events_sql(user_id, last, source)],
        f"user_id = {literal(user_id)}",
        timeout_s,
    )
    return history_result(summary[0], events)


def athena_source(settings: Settings, lane: str) -> Source:
    """The lane's common table as Athena sees it through Glue: the table ``lake_catalog = "glue"``
    registers (parquet: ``connectors.glue``; Iceberg: the catalog's Glue namespace and name)."""
    if settings.lake_format == "iceberg":
        space, table = table_identifier(
            settings.model_copy(update={"lake_catalog": "glue"}), lane, COMMON_TABLE
        )
        relation = f"{quote(space)}.{quote(table)}"
    else:
        relation = f"{quote(settings.lake_glue_database)}.{quote(glue_table_name(lane, COMMON_TABLE))}"
    return Source(relation, ATHENA, prune_days=settings.lake_partition_time == "server")


def export_segment(settings: Settings, topic: str, user_ids: Sequence[str]) -> int:
    """Each user id to ``topic`` (created if absent), keyed by the id, value ``{"user_id": id}``."""
    KafkaAdmin(settings).ensure_topics([topic])
    with EventProducer(settings) as producer:
        for user_id in user_ids:
            producer.produce_raw(topic, orjson.dumps({"user_id": user_id}), user_id.encode())
        producer.flush()
    return len(user_ids)


def segment_user_ids(settings: Settings, lane: str, sql: str, timeout_s: float | None = None) -> list[str]:
    """The distinct user ids ``sql`` selects over the lane's views (every table, as ``highway query``)."""
    wrapped = segment_sql(sql)

    def work(store: LakeStore, track: Callable[[duckdb.DuckDBPyConnection], None]) -> list[str]:
        connection, _ = lake_connection(settings, lane, mentioned_in=sql, store=store)
        track(connection)
        try:
            return [row[0] for row in connection.execute(wrapped).fetchall()]
        finally:
            connection.close()

    return within_deadline(settings, work, timeout_s)
