"""The analytics API's answers for errors (400 naming the parameter, 504 at the deadline, 502 for a
lake error) and the deadline of the analytics queries against an S3 endpoint that refuses."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectors.analytics_lake import run_funnel, user_history
from connectors.lake_query import QueryTimeout, work_left_running
from core.analytics.params import BadParameter, FunnelSpec
from core.settings import Settings
from streams.analytics_api import answer, last_param
from tests.support import wait_until


class FakeView:
    def json(self, body: Any, status: int = 200) -> tuple[int, Any]:
        return status, body


def respond(compute: Any) -> tuple[int, Any]:
    return asyncio.run(answer(FakeView(), compute))  # type: ignore[arg-type,return-value]


def raises(error: Exception) -> Any:
    def compute() -> dict[str, Any]:
        raise error

    return compute


def test_errors_become_statuses_with_messages() -> None:
    assert respond(lambda: {"steps": []}) == (200, {"steps": []})
    status, body = respond(lambda: FunnelSpec.parse({"steps": "a,b", "within": "soon"}))
    assert status == 400
    assert "within" in body["error"]
    assert respond(raises(QueryTimeout("gave up after 1s")))[0] == 504
    status, body = respond(raises(duckdb.IOException("no such file")))
    assert status == 502
    assert "no such file" in body["error"]
    with pytest.raises(BadParameter, match="last"):
        last_param({"last": "0"})
    assert last_param({}) == 20


# Parquet only: an Iceberg lane whose (local) catalog has no table yet is answered without S3, and an
# Iceberg table cannot be created on an endpoint that refuses; the deadline wrapper is the same one.
@pytest.mark.parametrize("lake_format", ["parquet"])
def test_analytics_give_up_at_the_deadline_on_a_refusing_endpoint(lake_format: str, tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    settings = Settings(
        lake_uri="s3://bucket/lake",
        lanes=["lane1"],
        lake_format=lake_format,
        lake_iceberg_catalog_path=tmp_path / "catalog.db",
        aws_s3_endpoint_url=endpoint,
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        lake_query_timeout_s=1.5,
    )
    with pytest.raises(QueryTimeout, match=r"gave up after 1\.5s"):
        run_funnel(settings, "lane1", FunnelSpec.parse({"steps": "a,b"}))
    with pytest.raises(QueryTimeout):
        user_history(settings, "lane1", "u1", 5)
    # The reads given up stop retrying at the deadline; a thread left in pyarrow's S3 code at
    # interpreter exit would abort the test process.
    wait_until(lambda: not work_left_running(), 60, 0.2, "the given-up reads to end")


def test_an_empty_lake_answers_zeros(tmp_path: Path) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["lane1"], lake_format="parquet")
    answer_ = run_funnel(settings, "lane1", FunnelSpec.parse({"steps": "a,b", "by": "platform"}))
    assert [step["users"] for step in answer_["steps"]] == [0, 0]
    assert user_history(settings, "lane1", "u1", 5)["events"] == 0
