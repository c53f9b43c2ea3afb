"""Segments: the distinct user ids a user's SQL (over the lake views of ``highway query``) selects."""

from __future__ import annotations


def segment_sql(sql: str) -> str:
    """The distinct, non-null ``user_id`` values of ``sql``'s rows, sorted (a stable export)."""
    inner = sql.strip().rstrip(";")
    return (
        f"SELECT DISTINCT CAST(user_id AS VARCHAR) AS user_id FROM (\n{inner}\n) segment\n"
        "WHERE user_id IS NOT NULL ORDER BY 1"
    )
