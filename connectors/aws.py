"""The one place AWS clients are built: boto3 for S3 and Glue, pyarrow's S3 filesystem.

Each service has its own endpoint (``aws_s3_endpoint_url``, ``aws_glue_endpoint_url``; None = AWS),
so that an S3-compatible store (MinIO) never receives Glue calls. Credentials are passed explicitly
only when both ``aws_access_key_id`` and ``aws_secret_access_key`` are set; otherwise boto3 and pyarrow
use the default AWS chain (environment, profile, instance role). Every client shares one bounded
timeout and retry policy: a dead endpoint fails a call within seconds, and the callers that must not
lose data (``connectors.lake_fs.LakeStore``) retry around the call for as long as they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import boto3
import pyarrow.fs as pafs
from botocore.config import Config

from core.errors import ConfigError
from core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 15
# Attempts per call, the first included (botocore "total_max_attempts", pyarrow "max_attempts"),
# in AWS's "standard" mode: throttling, 5xx and connection errors are retried with jittered backoff.
MAX_ATTEMPTS = 3
# The lake writes many partitions at once from several threads.
MAX_POOL_CONNECTIONS = 32


def client_config() -> Config:
    """The botocore configuration of every client Highway creates."""
    return Config(
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        max_pool_connections=MAX_POOL_CONNECTIONS,
    )


def create_client(
    service: Literal["s3", "glue"],
    endpoint_url: str | None,
    region: str,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> Any:
    """A boto3 client with the shared config; no keys = the default AWS credential chain.

    Also used by the local dev stack, which runs before any Settings exist.
    """
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=client_config(),
    )


def credentials(settings: Settings) -> tuple[str | None, str | None]:
    """The explicit key pair, or (None, None) for the default AWS chain."""
    key, secret = settings.aws_access_key_id, settings.aws_secret_access_key
    if key is None and secret is None:
        return None, None
    if key is None or secret is None:
        # One half would make boto3 fail at the first call with a less helpful message.
        raise ConfigError(
            "aws_access_key_id and aws_secret_access_key go together: set both, or neither to use the "
            "default AWS credential chain"
        )
    return key.get_secret_value(), secret.get_secret_value()


def s3_client(settings: Settings) -> S3Client:
    key, secret = credentials(settings)
    client: S3Client = create_client("s3", settings.aws_s3_endpoint_url, settings.aws_region, key, secret)
    return client


def glue_client(settings: Settings) -> GlueClient:
    key, secret = credentials(settings)
    client: GlueClient = create_client(
        "glue", settings.aws_glue_endpoint_url, settings.aws_region, key, secret
    )
    return client


def s3_filesystem(settings: Settings) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem on the S3 endpoint, with the same credentials and bounded timeouts."""
    endpoint = urlparse(settings.aws_s3_endpoint_url) if settings.aws_s3_endpoint_url else None
    key, secret = credentials(settings)
    return pafs.S3FileSystem(
        access_key=key,
        secret_key=secret,
        region=settings.aws_region,
        scheme=endpoint.scheme if endpoint else "https",
        endpoint_override=endpoint.netloc if endpoint else None,
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=READ_TIMEOUT_S,
        # A write finishes inside the call, so its error surfaces where the caller retries it.
        background_writes=False,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
    )
