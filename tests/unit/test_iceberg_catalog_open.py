"""Opening the embedded catalog while another process creates its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc

from connectors import iceberg_catalog


def _refusing(times: int, message: str) -> Any:
    real = iceberg_catalog.LakeSqlCatalog
    calls = {"n": 0}

    def open_catalog(name: str, **properties: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE iceberg_tables", {}, Exception(message))
        return real(name, **properties)

    return open_catalog, calls


def test_a_catalog_whose_tables_another_process_just_created_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing, calls = _refusing(1, "table iceberg_tables already exists")
    monkeypatch.setattr(iceberg_catalog, "LakeSqlCatalog", refusing)
    catalog = iceberg_catalog._open_sql_catalog(
        f"sqlite:///{tmp_path / 'c.db'}", {"warehouse": str(tmp_path)}
    )
    assert calls["n"] == 2
    assert catalog.list_namespaces() == []


def test_other_database_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refusing, calls = _refusing(1, "disk I/O error")
    monkeypatch.setattr(iceberg_catalog, "LakeSqlCatalog", refusing)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="disk I/O error"):
        iceberg_catalog._open_sql_catalog(f"sqlite:///{tmp_path / 'c.db'}", {"warehouse": str(tmp_path)})
    assert calls["n"] == 1


def test_a_race_that_keeps_failing_gives_up_after_the_last_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing, calls = _refusing(5, "table iceberg_tables already exists")
    monkeypatch.setattr(iceberg_catalog, "LakeSqlCatalog", refusing)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="already exists"):
        iceberg_catalog._open_sql_catalog(f"sqlite:///{tmp_path / 'c.db'}", {"warehouse": str(tmp_path)})
    assert calls["n"] == 3
