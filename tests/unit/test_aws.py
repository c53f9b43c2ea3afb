"""connectors.aws: every AWS client from one builder, each service on its own endpoint (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from connectors.aws import CONNECT_TIMEOUT_S, MAX_ATTEMPTS, READ_TIMEOUT_S, glue_client, s3_client
from connectors.glue import Catalog
from connectors.lake_fs import LakeStore, filesystem_for
from connectors.local.s3 import s3_client as local_s3_client
from core.errors import ConfigError
from core.settings import Settings

S3_ENDPOINT = "http://127.0.0.1:40010"
GLUE_ENDPOINT = "http://127.0.0.1:40020"


def settings(**values: Any) -> Settings:
    return Settings(_env_prefix="HIGHWAY_TEST_UNUSED_", **values)


@pytest.fixture
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """The default AWS chain sees only what a test sets (no developer profile or keys)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def access_key(client: Any) -> str | None:
    credentials = client._request_signer._credentials
    return None if credentials is None else str(credentials.access_key)


def fs_options(fs: pafs.FileSystem) -> dict[str, Any]:
    """The options an S3FileSystem was built with (what pyarrow pickles it as)."""
    _, (options,) = fs.__reduce__()
    assert isinstance(options, dict)
    return options


def test_s3_and_glue_each_use_their_own_endpoint() -> None:
    both = settings(aws_s3_endpoint_url=S3_ENDPOINT, aws_glue_endpoint_url=GLUE_ENDPOINT)
    assert s3_client(both).meta.endpoint_url == S3_ENDPOINT
    assert glue_client(both).meta.endpoint_url == GLUE_ENDPOINT
    # An S3-compatible store (MinIO) does not serve Glue: without a Glue endpoint, Glue is AWS's.
    s3_only = settings(aws_s3_endpoint_url=S3_ENDPOINT, aws_region="eu-west-1")
    assert glue_client(s3_only).meta.endpoint_url == "https://glue.eu-west-1.amazonaws.com"
    assert Catalog(s3_only).client.meta.endpoint_url == "https://glue.eu-west-1.amazonaws.com"
    assert Catalog(both).client.meta.endpoint_url == GLUE_ENDPOINT


def test_clients_share_one_bounded_config_with_the_local_stack() -> None:
    clients = [
        s3_client(settings()),
        glue_client(settings()),
        local_s3_client(S3_ENDPOINT),
    ]
    for client in clients:
        config = client.meta.config
        assert config.connect_timeout == CONNECT_TIMEOUT_S
        assert config.read_timeout == READ_TIMEOUT_S
        assert config.retries == {"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}
    assert clients[2].meta.endpoint_url == S3_ENDPOINT


def test_explicit_keys_win_over_the_default_chain(no_ambient_aws: pytest.MonkeyPatch) -> None:
    no_ambient_aws.setenv("AWS_ACCESS_KEY_ID", "from-the-chain")
    no_ambient_aws.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    explicit = settings(aws_access_key_id="explicit", aws_secret_access_key="explicit-secret")
    assert access_key(s3_client(explicit)) == "explicit"
    assert access_key(glue_client(explicit)) == "explicit"
    assert access_key(s3_client(settings())) == "from-the-chain"
    assert access_key(glue_client(settings())) == "from-the-chain"


def test_half_a_key_pair_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="aws_secret_access_key"):
        s3_client(settings(aws_access_key_id="only-the-id"))
    with pytest.raises(ConfigError, match="aws_access_key_id"):
        glue_client(settings(aws_secret_access_key="only-the-secret"))


def test_lake_filesystem_uses_the_s3_endpoint_keys_and_timeouts() -> None:
    values = settings(
        lake_uri="s3://bucket/prefix",
        aws_s3_endpoint_url=S3_ENDPOINT,
        aws_glue_endpoint_url=GLUE_ENDPOINT,
        aws_region="eu-west-1",
        aws_access_key_id="key",
        aws_secret_access_key="secret",
    )
    fs, root = filesystem_for(values)
    assert root == "bucket/prefix"
    options = fs_options(fs)
    assert options["endpoint_override"] == "127.0.0.1:40010"
    assert options["scheme"] == "http"
    assert options["region"] == "eu-west-1"
    assert (options["access_key"], options["secret_key"]) == ("key", "secret")
    assert options["connect_timeout"] == CONNECT_TIMEOUT_S
    assert options["request_timeout"] == READ_TIMEOUT_S
    assert options["background_writes"] is False
    store = LakeStore(values)
    assert store._s3 is not None
    assert store._s3.meta.endpoint_url == S3_ENDPOINT


def test_lake_filesystem_on_aws_uses_https_and_the_default_chain(no_ambient_aws: pytest.MonkeyPatch) -> None:
    fs, root = filesystem_for(settings(lake_uri="s3://bucket"))
    options = fs_options(fs)
    assert root == "bucket"
    assert options["scheme"] == "https"
    assert options["endpoint_override"] == ""
    assert not options["access_key"]  # none given: pyarrow resolves the default chain itself


def test_a_local_lake_needs_no_aws_client(tmp_path: Path) -> None:
    store = LakeStore(settings(lake_uri=f"file://{tmp_path}/lake"))
    assert isinstance(store.fs, pafs.LocalFileSystem)
    assert store._s3 is None
