"""Partition pruning for ``highway query`` on Iceberg tables: ``dt``/``hour`` equalities of the SQL. Pure.

Only a conservative subset is recognised — ``dt = 'YYYY-MM-DD'`` and ``hour = 'HH'`` in a query over
one table that has no ``OR``, ``NOT`` or subquery — so the filter handed to the Iceberg scan never
drops a row the SQL would have kept. Anything else scans the whole table (DuckDB still applies the
WHERE clause; pruning only saves reading files).
"""

from __future__ import annotations

import re

_EQUALS = {
    "dt": re.compile(r"(?<![\w.\"])dt\s*=\s*'(\d{4}-\d{2}-\d{2})'", re.I),
    "hour": re.compile(r"(?<![\w.\"])hour\s*=\s*'(\d{2})'", re.I),
}
_UNSAFE = re.compile(r"\b(or|not|union|except|intersect)\b", re.I)


def partition_filter(sql: str, tables_mentioned: int) -> str | None:
    """An Iceberg row filter (``dt = '…' AND hour = '…'``) implied by ``sql``, or None."""
    if tables_mentioned != 1 or _UNSAFE.search(sql) or len(re.findall(r"\bselect\b", sql, re.I)) != 1:
        return None
    where = re.split(r"\bwhere\b", sql, maxsplit=1, flags=re.I)
    if len(where) != 2:
        return None
    terms = []
    for column, pattern in _EQUALS.items():
        values = set(pattern.findall(where[1]))
        if len(values) == 1:
            terms.append(f"{column} = '{values.pop()}'")
    return " AND ".join(terms) or None
