"""Session fixtures: a real Kafka broker and S3 API for integration tests, and per-test settings.

``local_stack`` starts once per session through the same launcher as ``highway dev up``
(``connectors.local.stack.start_stack``) with its own state dir and ports, and is torn down at the
end of the session. When ``HIGHWAY_KAFKA_BOOTSTRAP`` (or ``HIGHWAY_AWS_S3_ENDPOINT_URL``) is set, that
service is used instead of a local one (it is then not restartable: ``stack.kafka.restartable``).
Nothing starts unless a test asks for one of these fixtures, so unit tests stay broker-free.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.settings import Settings
from core.settings_load import load_settings

if TYPE_CHECKING:
    from connectors.local.stack import LocalStack

# Settings built by make_settings ignore the HIGHWAY_* environment (a developer's exported
# `highway dev up` values must not leak into a test): no variable carries this prefix.
_ISOLATED_ENV_PREFIX = "HIGHWAY_TEST_FIXTURE_ISOLATED_"

MakeSettings = Callable[..., Settings]


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The session's broker + S3 API: ``.bootstrap``, ``.s3_endpoint``, ``.kafka``, ``.s3``.

    ``.kafka.stop()`` / ``.kafka.start()`` restart the same broker (same data dir and ports).
    ``.s3.stop()`` / ``.s3.start()`` simulate an S3 outage on the same endpoint; objects survive.
    """
    from connectors.local.stack import start_stack  # imported here: unit runs never load it

    environment = load_settings()  # only to honour explicitly configured external services
    stack = start_stack(environment, tmp_path_factory.mktemp("local-stack"), tie_to_parent=True)
    try:
        yield stack
    finally:
        stack.close()


def isolated_settings(**values: Any) -> Settings:
    """Settings from exactly ``values`` plus defaults, whatever the environment holds."""
    return Settings(_env_prefix=_ISOLATED_ENV_PREFIX, **values)


@pytest.fixture
def make_settings(local_stack: LocalStack, tmp_path: Path) -> MakeSettings:
    """``make_settings(**overrides)``: settings on the session stack with a unique lane per call.

    Each call gets lane ``t<8 hex>``, app id ``highway-test-<hex>``, a fresh bucket with
    ``lake_uri=s3://<bucket>/lake``, ``state_dir`` under ``tmp_path``, a free ``http_port``,
    ``topic_partitions=3`` and the S3 credentials; ``overrides`` win.
    """

    from connectors.local.process import free_ports
    from connectors.local.s3 import ensure_bucket

    def make(**overrides: Any) -> Settings:
        token = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            **local_stack.settings_overrides(),
            "lanes": [f"t{token}"],
            "app_id": f"highway-test-{token}",
            "lake_uri": f"s3://hw-test-{token}/lake",
            "state_dir": tmp_path / f"state-{token}",
            "http_port": free_ports(1)[0],
            "topic_partitions": 3,
        }
        values.update(overrides)
        settings = isolated_settings(**values)
        if settings.lake_uri.startswith("s3://") and settings.aws_s3_endpoint_url:
            bucket = settings.lake_uri.removeprefix("s3://").split("/", 1)[0]
            ensure_bucket(
                settings.aws_s3_endpoint_url, bucket, local_stack.access_key_id, local_stack.secret_access_key
            )
        return settings

    return make
