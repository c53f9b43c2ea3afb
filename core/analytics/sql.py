"""What differs between the engines the analytics SQL is written for: DuckDB (run by Highway over
the lake) and Athena (Trino, over the Glue tables; printed by ``--sql athena``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.analytics.params import TimeRange


def literal(value: str) -> str:
    """A standard SQL string literal (both engines read backslashes literally)."""
    return "'" + value.replace("'", "''") + "'"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Dialect:
    name: str
    epoch_ms: str  # template over {column}
    median: str  # template over {value}
    list_agg: str  # template over {value}, {order}

    def ts_ms(self, column: str) -> str:
        return self.epoch_ms.format(column=column)

    def median_of(self, value: str) -> str:
        return self.median.format(value=value)


DUCKDB = Dialect("duckdb", "epoch_ms({column})", "median({value})", "list({value} ORDER BY {order})")
# Athena has no exact median; approx_percentile is its documented stand-in.
ATHENA = Dialect(
    "athena",
    "CAST(to_unixtime({column}) * 1000 AS BIGINT)",
    "approx_percentile({value}, 0.5)",
    "array_agg({value} ORDER BY {order})",
)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Source:
    """Where the common attributes are read from: a relation (a DuckDB view, an Athena table) in
    ``dialect``. ``prune_days``: the lake is partitioned by the day of ``server_ts`` (the default
    ``lake_partition_time``), so a time range may also bound ``dt`` and skip whole days of files."""

    relation: str
    dialect: Dialect = DUCKDB
    prune_days: bool = True

    def range_filter(self, span: TimeRange) -> str:
        """``AND …`` conditions keeping the events of ``span``."""
        ts = self.dialect.ts_ms("server_ts")
        conditions = []
        if span.from_ms is not None:
            conditions.append(f"{ts} >= {span.from_ms}")
            if self.prune_days:
                conditions.append(f"dt >= {literal(_day(span.from_ms))}")
        if span.to_ms is not None:
            conditions.append(f"{ts} < {span.to_ms}")
            if self.prune_days:
                conditions.append(f"dt <= {literal(_day(span.to_ms))}")
        return "".join(f"\n    AND {condition}" for condition in conditions)
