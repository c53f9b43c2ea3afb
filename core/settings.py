"""The one configuration model for every Highway process.

Settings come from (highest priority first) explicit keyword arguments, environment variables
``HIGHWAY_<FIELD>`` (e.g. ``HIGHWAY_KAFKA_BOOTSTRAP``), an optional TOML file, then defaults.
The model is frozen and validated once at start-up; it is passed into every component and never
read from globals or the environment deep in the code.

The TOML file may be flat (``kafka_bootstrap = "..."``) or use tables whose name is the field
prefix (``[kafka] bootstrap = "..."`` is ``kafka_bootstrap``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from core.collect.cors import parse_origins
from core.collect.keys import parse_api_keys
from core.settings_rules import (
    ENV_PREFIX,
    http_access_problem,
    kafka_security_problem,
    layout_problem,
    split_csv,
    token_from_file,
)

_LANE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class Settings(BaseSettings):
    """Typed, validated settings. Field ``x_y`` is environment variable ``HIGHWAY_X_Y``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    # --- General: identity, lanes, plugins, local state ---
    app_id: str = Field("highway", description="Faust app id / consumer group prefix")
    lanes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="modules whose Faust agents the worker loads (see docs/plugins.md)"
    )
    state_dir: Path = Field(Path(".highway"), description="local state: dev services, caches, logs")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- Kafka (kafka_*): brokers, security, wire format ---
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,…]")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    kafka_sasl_username: str | None = Field(None, description="PLAIN and SCRAM")
    kafka_sasl_password: SecretStr | None = Field(None, description="PLAIN and SCRAM")
    kafka_oauth_token_endpoint_url: str | None = Field(None, description="OAUTHBEARER: OIDC token endpoint")
    kafka_oauth_client_id: str | None = Field(None, description="OAUTHBEARER client id")
    kafka_oauth_client_secret: SecretStr | None = Field(None, description="OAUTHBEARER client secret")
    kafka_oauth_scope: str | None = Field(None, description="OAUTHBEARER scope (optional)")
    kafka_ssl_ca_file: Path | None = Field(None, description="CA bundle of the brokers' certificates")
    kafka_ssl_cert_file: Path | None = Field(None, description="mTLS: client certificate (PEM)")
    kafka_ssl_key_file: Path | None = Field(None, description="mTLS: client private key (PEM)")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="mTLS: password of an encrypted key")
    kafka_extra_config: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="librdkafka settings Highway does not model, for every confluent-kafka client"
        " (env: a JSON object; values are kept secret); keys Highway sets itself are refused",
    )
    kafka_schema_registry_url: str | None = Field(
        None, description="Confluent schema registry; when set, events use the Avro wire format"
    )
    kafka_schema_registry_username: str | None = Field(None, description="schema registry basic auth")
    kafka_schema_registry_password: SecretStr | None = Field(None, description="schema registry basic auth")
    kafka_schema_registry_ca_file: Path | None = Field(None, description="CA bundle of the registry's HTTPS")
    kafka_wire_format: Literal["json", "avro"] = "json"
    kafka_consumer_stall_s: float = Field(
        120.0, ge=10, description="a stage's consumer given nothing this long while records wait is restarted"
    )

    # --- Topics (topic_*): names and layout ---
    topic_all_events: str = "{lane}.events.all"
    topic_common: str = "{lane}.events.common"
    topic_per_event: str = "{lane}.event.{name}"
    topic_dlq: str = "{lane}.events.dlq"
    topic_concurrency: str = "{lane}.metrics.concurrency"
    topic_partitions: int = Field(6, ge=1, le=10_000, description="partitions of a lane's own topics")
    topic_event_partitions: int = Field(
        1, ge=1, le=10_000, description="partitions of a new per-event topic (grow one: highway topics grow)"
    )
    topic_replication_factor: int = Field(1, ge=1, le=16)
    topic_retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1)

    # --- Router (router_*) ---
    router_batch_size: int = Field(5000, ge=1, description="events consumed per routing batch")
    router_batch_wait_s: float = Field(0.05, ge=0, description="longest wait to fill a batch")
    router_max_event_bytes: int = Field(1_000_000, ge=256)
    router_new_types_per_minute: int = Field(1000, ge=1, description="per lane")
    router_max_event_types: int = Field(5000, ge=1, description="per lane, total")
    router_event_name_allow: str | None = Field(None, description="regex an event name must fullmatch")
    router_max_property_depth: int = Field(
        8, ge=1, le=100, description="levels of nested objects/arrays in properties (flat = 1)"
    )
    router_max_property_keys: int = Field(
        1000, ge=1, description="keys and array items in one event's properties, counted over the whole tree"
    )
    router_future_tolerance_s: int = Field(
        300,
        ge=0,
        le=3600,
        description="server_ts this far ahead of the router's clock is still accepted"
        " (at most the broker's 1 h log.message.timestamp.after.max.ms)",
    )
    router_max_event_age_s: int | None = Field(
        None, ge=1, description="older server_ts is out of bounds; None = topic_retention_ms (none if -1)"
    )
    router_timestamp_policy: Literal["dead_letter", "restamp"] = Field(
        "dead_letter", description="server_ts out of bounds: dead_letter, or restamp with the router's clock"
    )
    router_delivery: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once", description="exactly_once: Kafka transactions; at_least_once: flush, then commit"
    )
    router_commit_interval_s: float = Field(
        0.1, gt=0, le=60, description="how often routed output is committed (one transaction per interval)"
    )
    router_transaction_timeout_s: float = Field(
        30.0, ge=1, le=900, description="broker aborts a transaction of a vanished router after this"
    )
    router_instance_id: str = Field(
        "", description="stable per-process id (transactional id, group member); empty = host+state dir+slot"
    )
    router_topic_wait_s: float = Field(
        30.0, gt=0, description="longest a new type's events wait for their topic before backing off"
    )
    router_max_pending_events: int = Field(
        200_000, ge=1, description="uncommitted events (e.g. waiting for a new topic) before reading pauses"
    )
    router_failure_deadline_s: float = Field(
        600.0, gt=0, description="transient failures this long without progress fail the stage"
    )

    # --- Lake (lake_*) ---
    lake_uri: str = Field("file://./.highway/lake", description="s3://bucket/prefix or file:///path")
    lake_compression: Literal["zstd", "snappy"] = "zstd"
    lake_flush_rows: int = Field(100_000, ge=1)
    lake_flush_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    lake_flush_age_s: float = Field(60.0, gt=0)
    lake_max_buffered_bytes: int = Field(
        512 * 1024 * 1024,
        ge=1024,
        description="buffered records plus (iceberg) the metadata cache, at most 1/8 of it; see docs/lake.md",
    )
    lake_flush_concurrency: int = Field(
        16, ge=1, le=256, description="S3 requests and table commits a flush runs at once"
    )
    lake_partition_time: Literal["server", "client"] = "server"
    lake_topic_rescan_s: float = Field(10.0, gt=0, description="rescan for new per-event topics")
    lake_catalog: Literal["none", "glue", "projection"] = "none"
    lake_glue_database: str = "highway"
    lake_max_properties_per_event: int = Field(
        200, ge=1, le=10_000, description="properties of one event that become columns; the rest go to _extra"
    )
    lake_max_columns_per_table: int = Field(
        1000, ge=1, le=10_000, description="property columns of one table; values needing more go to _extra"
    )
    lake_error_retry_s: float = Field(30.0, gt=0, le=3600, description="retry of a permanent S3/Glue error")
    lake_query_timeout_s: float = Field(30.0, gt=0, description="highway query gives up after this long")
    lake_format: Literal["iceberg", "parquet"] = Field("iceberg", description="or Hive-layout parquet")
    lake_iceberg_catalog_path: Path | None = Field(
        None, description="SQLite Iceberg catalog; None = <lake>/_iceberg_catalog.db or <state_dir>/…"
    )
    lake_compact_target_bytes: int = Field(128 * 1024 * 1024, ge=1024, description="Iceberg file size goal")
    lake_compact_min_files: int = Field(2, ge=2, description="files that make a closed hour worth compacting")
    lake_maintenance_interval_s: float = Field(900.0, ge=0, description="Iceberg upkeep in the worker; 0 off")
    lake_snapshot_max_age_s: float = Field(3600.0, gt=0, description="older snapshots are expired")
    lake_orphan_min_age_s: float = Field(24 * 3600.0, gt=0, description="safety window of orphan removal")

    # --- AWS (aws_*): S3 and Glue clients ---
    aws_region: str = "us-east-1"
    aws_s3_endpoint_url: str | None = Field(None, description="S3 API endpoint; None = AWS")
    aws_glue_endpoint_url: str | None = Field(None, description="Glue API endpoint; None = AWS")
    aws_access_key_id: SecretStr | None = Field(
        None, description="access key passed explicitly to boto3/pyarrow; None = the default AWS chain"
    )
    aws_secret_access_key: SecretStr | None = None

    # --- Realtime (realtime_*) ---
    realtime_window_s: int = Field(60, ge=1, description="tumbling window size")
    realtime_sliding_window_s: int = Field(
        300, ge=1, description="sliding view size (multiple of realtime_window_s)"
    )
    realtime_allowed_lateness_s: int = Field(120, ge=0)
    realtime_dimensions: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["platform", "app_version", "event_name"]
    )
    realtime_dimension_top_n: int = Field(
        50, ge=1, description="named values per dimension and window (first seen); later ones: 'other'"
    )
    realtime_event_name_top_n: int | None = Field(
        None, ge=1, description="deprecated name of realtime_dimension_top_n (used when that is unset)"
    )
    realtime_max_dimension_chars: int = Field(
        64, ge=1, le=1024, description="dimension values longer than this are cut to this many characters"
    )
    realtime_idle_timeout_s: int = Field(
        30, ge=0, description="a partition without records this long follows the wall clock (0: never)"
    )
    realtime_future_tolerance_s: int = Field(
        300, ge=0, description="events further ahead of the wall clock are counted, not applied"
    )
    realtime_parked_max_age_s: int = Field(
        300, ge=0, description="a revoked partition's windows are kept this long in case it comes back"
    )
    realtime_history_hours: int = Field(6, ge=1, description="closed windows kept for the HTTP API")

    # --- Sessions (sessions_*): the sessions table derived from the common topic ---
    sessions_gap_s: int = Field(
        1800, ge=1, description="inactivity (event time) that ends a session without a client session_id"
    )
    sessions_allowed_lateness_s: int = Field(
        120, ge=0, description="the watermark trails the latest event time by this much"
    )
    sessions_clock_skew_s: int = Field(
        300,
        ge=0,
        description="a client_ts further than this from server_ts is not trusted: server_ts is used",
    )
    sessions_idle_timeout_s: int = Field(
        30, ge=0, description="a partition without records this long follows the wall clock (0: never)"
    )
    sessions_flush_age_s: float = Field(
        10.0, gt=0, description="closed sessions are committed to the lake at least this often"
    )

    # --- HTTP (http_*): the worker's web server ---
    http_host: str = Field(
        "127.0.0.1", description="bind address; any but a loopback address needs api_token (docs/security.md)"
    )
    http_port: int = Field(6066, ge=0, le=65535)
    http_tls_cert_file: Path | None = Field(None, description="serve HTTPS with this certificate (PEM)")
    http_tls_key_file: Path | None = Field(None, description="private key of http_tls_cert_file (PEM)")

    # --- HTTP API access (api_*, metrics_*) ---
    api_token: SecretStr | None = Field(
        None,
        description="bearer token every endpoint but /health, /ready (and /metrics) requires;"
        " user lookups are disabled without one",
    )
    api_token_file: Path | None = Field(None, description="read api_token from this file (a mounted secret)")
    metrics_require_token: bool = Field(False, description="/metrics needs the api_token too")

    # --- Collector (collector_*): the HTTP front door, docs/collector.md ---
    collector_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="largest body, also once decompressed (413)"
    )
    collector_api_keys: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description="lane → SHA-256 hex digests of its keys (`highway collector hash-key`);"
        " env: JSON or lane:digest,…",
    )
    collector_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="browser origins allowed to post (CORS); `*` = any"
    )
    collector_max_in_flight: int = Field(
        50_000, ge=1, description="events handed to Kafka and not yet acknowledged before answering 429"
    )
    collector_async: bool = Field(
        False, description="answer 202 before Kafka acknowledged (events lost if the collector dies first)"
    )

    # --- Local dev stack (dev_*): `highway dev`, the demo, the test fixtures ---
    dev_kafka_version: str = Field("4.1.1", description="Apache Kafka version resolved from Maven")
    dev_kafka_heap: str = Field("768m", pattern=r"^[0-9]+[mMgG]$", description="local broker -Xmx")
    dev_kafka_backend: Literal["auto", "maven", "docker"] = Field(
        "auto", description="auto: Maven jars when java+mvn exist, else testcontainers when Docker answers"
    )
    dev_cache_dir: Path | None = Field(None, description="broker jar cache; None = ~/.cache/highway")
    dev_bucket: str = Field("highway", description="bucket created on the local S3 API")

    @field_validator("lanes", "plugins", "realtime_dimensions", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("lanes")
    @classmethod
    def _lane_names(cls, lanes: list[str]) -> list[str]:
        if not lanes:
            raise ValueError("at least one lane is required")
        for lane in lanes:
            if not _LANE_RE.match(lane):
                raise ValueError(f"lane {lane!r} must match {_LANE_RE.pattern}")
        if len(set(lanes)) != len(lanes):
            raise ValueError("lanes must be unique")
        return lanes

    @field_validator("collector_api_keys", "collector_cors_origins", mode="before")
    @classmethod
    def _collector(cls, value: Any, info: ValidationInfo) -> Any:
        return (parse_api_keys if info.field_name == "collector_api_keys" else parse_origins)(value)

    @field_validator("lake_uri")
    @classmethod
    def _lake_uri(cls, uri: str) -> str:
        if not (uri.startswith(("s3://", "file://"))):
            raise ValueError("must start with s3:// or file://")
        if uri.startswith("s3://") and len(uri) <= len("s3://"):
            raise ValueError("s3:// URI needs a bucket")
        return uri.rstrip("/")

    @field_validator("router_event_name_allow")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("realtime_event_name_top_n") is not None:
            data.setdefault("realtime_dimension_top_n", data["realtime_event_name_top_n"])
        return data

    @model_validator(mode="before")
    @classmethod
    def _token_from_file(cls, data: Any) -> Any:
        return token_from_file(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistency(self) -> Settings:
        problem = layout_problem(self) or kafka_security_problem(self) or http_access_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    # --- derived names ---
    def app_group_id(self, roles: Sequence[str], all_roles: Sequence[str]) -> str:
        """The Faust app's consumer group: every worker in one group runs the same roles."""
        if set(roles) == set(all_roles):
            return self.app_id
        return f"{self.app_id}-{'-'.join(sorted(roles))}"

    def max_event_age_ms(self) -> int | None:
        """How old a ``server_ts`` the router routes unchanged (None: no bound but the epoch)."""
        if self.router_max_event_age_s is not None:
            return self.router_max_event_age_s * 1000
        return None if self.topic_retention_ms < 0 else self.topic_retention_ms

    def all_events_topic(self, lane: str) -> str:
        return self.topic_all_events.format(lane=lane)

    def common_topic(self, lane: str) -> str:
        return self.topic_common.format(lane=lane)

    def dlq_topic(self, lane: str) -> str:
        return self.topic_dlq.format(lane=lane)

    def concurrency_topic(self, lane: str) -> str:
        return self.topic_concurrency.format(lane=lane)

    def event_topic(self, lane: str, topic_safe_name: str) -> str:
        """Per-event topic for an already sanitised name (see ``core.routing.naming``)."""
        return self.topic_per_event.format(lane=lane, name=topic_safe_name)

    def event_topic_pattern(self, lane: str) -> str:
        """Regex matching every per-event topic of a lane."""
        before, after = self.topic_per_event.split("{name}", 1)
        return re.escape(before.format(lane=lane)) + r"[A-Za-z0-9._-]+" + re.escape(after.format(lane=lane))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit kwargs (which carry the TOML file, see load_settings) lose to the environment
        # so that an operator can override a shipped file with one variable.
        return (env_settings, init_settings)
