"""The local infrastructure as one unit: a Kafka broker and an S3 API, started, found and stopped.

One code path serves ``highway dev up|down|status``, ``highway demo`` and the pytest session
fixtures; each caller passes its own state directory, so a developer's stack and a test session's
stack never share ports or data.

Kafka comes from, in order: a broker the user configured explicitly (``HIGHWAY_KAFKA_BOOTSTRAP`` set
and answering); the Maven-resolved local broker (``connectors.local.kafka``) when java and mvn exist;
testcontainers' Kafka when a Docker engine answers (in-process callers only: its container dies with
the process that started it). S3 is an explicitly configured endpoint or moto (``connectors.local.s3``),
which also serves Glue on the same port; moto is the ``local`` extra (``pip install 'highway[local]'``).
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from connectors.local.kafka import KafkaBroker, broker_answers
from connectors.local.kafka_jars import cached_jars, default_cache_root, locked
from connectors.local.process import read_state
from connectors.local.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    S3Server,
    ensure_bucket,
    require_moto,
)
from core.errors import InfrastructureError
from core.settings import Settings


class KafkaHandle(Protocol):
    """What callers may do with the stack's broker, whatever runs it."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def restartable(self) -> bool: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    def is_running(self) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


class S3Handle(Protocol):
    @property
    def endpoint(self) -> str: ...

    @property
    def restartable(self) -> bool: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    def shutdown(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class ExternalKafka:
    """A broker someone else runs (``HIGHWAY_KAFKA_BOOTSTRAP``): used, never stopped or restarted."""

    restartable = False

    def __init__(self, bootstrap: str, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s

    def start(self) -> ExternalKafka:
        if not broker_answers(self.bootstrap, timeout_s=self.timeout_s):
            raise InfrastructureError(
                f"HIGHWAY_KAFKA_BOOTSTRAP={self.bootstrap} does not answer; start that broker or unset the "
                "variable to use the local one"
            )
        return self

    def stop(self) -> None:
        raise InfrastructureError(f"the broker at {self.bootstrap} is external; Highway does not stop it")

    def is_running(self) -> bool:
        return broker_answers(self.bootstrap)

    def describe(self) -> dict[str, Any]:
        return {
            "service": "kafka",
            "external": True,
            "bootstrap": self.bootstrap,
            "running": self.is_running(),
        }


class ExternalS3:
    """An S3 endpoint someone else runs (``HIGHWAY_AWS_S3_ENDPOINT_URL``)."""

    restartable = False

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def start(self) -> ExternalS3:
        return self

    def stop(self) -> None:
        raise InfrastructureError(f"the S3 endpoint {self.endpoint} is external; Highway does not stop it")

    def shutdown(self) -> None:
        """Nothing to end: the endpoint belongs to someone else."""

    def describe(self) -> dict[str, Any]:
        return {"service": "s3", "external": True, "endpoint": self.endpoint}


class DockerKafka:
    """testcontainers' KafkaContainer; lives as long as this Python process."""

    restartable = False

    def __init__(self) -> None:
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.10 kept it at the top level
            from testcontainers.kafka import KafkaContainer

        self._container = KafkaContainer()
        self.bootstrap = ""

    def start(self) -> DockerKafka:
        self._container.start()
        self.bootstrap = self._container.get_bootstrap_server()
        return self

    def stop(self) -> None:
        self._container.stop()

    def is_running(self) -> bool:
        return bool(self.bootstrap) and broker_answers(self.bootstrap)

    def describe(self) -> dict[str, Any]:
        return {"service": "kafka", "docker": True, "bootstrap": self.bootstrap, "running": self.is_running()}


def docker_available() -> bool:
    """True when a Docker engine answers a ping (never raises)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@dataclass
class LocalStack:
    """A running broker + S3 API and the settings that reach them."""

    kafka: KafkaHandle
    s3: S3Handle
    bucket: str
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    region: str = REGION
    # moto serves Glue on its S3 port; an external S3 endpoint says nothing about where Glue is.
    glue_endpoint: str | None = None

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def s3_endpoint(self) -> str:
        return self.s3.endpoint

    @property
    def lake_uri(self) -> str:
        return f"s3://{self.bucket}/lake"

    def env(self) -> dict[str, str]:
        """The variables that point Highway (and plain AWS clients) at this stack."""
        return {
            "HIGHWAY_KAFKA_BOOTSTRAP": self.bootstrap,
            "HIGHWAY_AWS_S3_ENDPOINT_URL": self.s3_endpoint,
            **({"HIGHWAY_AWS_GLUE_ENDPOINT_URL": self.glue_endpoint} if self.glue_endpoint else {}),
            "HIGHWAY_LAKE_URI": self.lake_uri,
            "HIGHWAY_AWS_ACCESS_KEY_ID": self.access_key_id,
            "HIGHWAY_AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "HIGHWAY_AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap": self.bootstrap,
            "aws_s3_endpoint_url": self.s3_endpoint,
            "aws_glue_endpoint_url": self.glue_endpoint,
            "lake_uri": self.lake_uri,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_region": self.region,
        }

    def close(self) -> None:
        """Stop what this stack started (external services are left alone)."""
        if not isinstance(self.kafka, ExternalKafka):
            self.kafka.stop()
        self.s3.shutdown()


def render_exports(env: dict[str, str]) -> str:
    """``export K=V`` lines, shell-quoted, for ``eval "$(highway dev up)"`` (pure)."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def kafka_broker(
    settings: Settings, state_dir: Path, console: Console | None = None, tie_to_parent: bool = False
) -> KafkaBroker:
    return KafkaBroker(
        state_dir / "kafka",
        kafka_version=settings.dev_kafka_version,
        cache_root=settings.dev_cache_dir,
        heap=settings.dev_kafka_heap,
        console=console,
        tie_to_parent=tie_to_parent,
    )


def start_stack(
    settings: Settings,
    state_dir: Path,
    console: Console | None = None,
    allow_docker: bool = True,
    tie_to_parent: bool = False,
) -> LocalStack:
    """Start (or reuse) the stack kept in ``state_dir``; return once both services answer.

    ``allow_docker``: may fall back to testcontainers (only for callers that outlive their use of the
    stack). ``tie_to_parent``: the services die with this process (test sessions), instead of
    staying detached (``highway dev up``).
    """
    console = console or Console(stderr=True)
    # Two `dev up` at once must not start two brokers on one data dir.
    with locked(state_dir / ".lock"):
        s3 = _choose_s3(settings, state_dir, tie_to_parent)
        kafka = _choose_kafka(settings, state_dir, console, allow_docker, tie_to_parent)
        if isinstance(s3, S3Server):
            s3.start(wait=False)  # moto's start-up overlaps the broker's
        kafka.start()
        s3.start()
    key = settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else ACCESS_KEY_ID
    secret = (
        settings.aws_secret_access_key.get_secret_value()
        if settings.aws_secret_access_key
        else SECRET_ACCESS_KEY
    )
    ensure_bucket(s3.endpoint, settings.dev_bucket, key, secret)
    return LocalStack(
        kafka=kafka,
        s3=s3,
        bucket=settings.dev_bucket,
        access_key_id=key,
        secret_access_key=secret,
        glue_endpoint=glue_endpoint(settings, s3),
    )


def glue_endpoint(settings: Settings, s3: S3Handle) -> str | None:
    """Where Glue calls go: moto's port when the stack runs moto, else the configured endpoint."""
    return s3.endpoint if isinstance(s3, S3Server) else settings.aws_glue_endpoint_url


def stop_stack(state_dir: Path) -> list[str]:
    """Stop the services recorded in ``state_dir`` (idempotent); return what was running."""
    if not state_dir.exists():
        return []
    with locked(state_dir / ".lock"):
        return _stop_recorded(state_dir)


def _stop_recorded(state_dir: Path) -> list[str]:
    stopped: list[str] = []
    broker = KafkaBroker(state_dir / "kafka")
    if broker.is_running():
        stopped.append(f"kafka (pid {broker.pid})")
    broker.stop()
    s3 = S3Server(state_dir / "s3")
    if s3.is_running():
        stopped.append(f"s3 (pid {s3.pid})")
    s3.shutdown()
    return stopped


def stack_status(state_dir: Path) -> list[dict[str, Any]]:
    return [KafkaBroker(state_dir / "kafka").describe(), S3Server(state_dir / "s3").describe()]


def _explicit(settings: Settings, field: str, own_value: str | None) -> bool:
    # A value equal to what this state dir's own service had (e.g. exported by an earlier
    # `dev up` in the same shell) is not "someone else's" service.
    return field in settings.model_fields_set and getattr(settings, field) != own_value


def _choose_kafka(
    settings: Settings, state_dir: Path, console: Console, allow_docker: bool, tie_to_parent: bool
) -> KafkaHandle:
    own = read_state(state_dir / "kafka" / "broker.json").get("port")
    own_bootstrap = f"127.0.0.1:{own}" if own else None
    if _explicit(settings, "kafka_bootstrap", own_bootstrap):
        return ExternalKafka(settings.kafka_bootstrap)
    backend = settings.dev_kafka_backend
    # mvn is only needed until the jars are cached; java always.
    can_run_jars = shutil.which("java") is not None and (
        shutil.which("mvn") is not None
        or cached_jars(settings.dev_cache_dir or default_cache_root(), settings.dev_kafka_version) is not None
    )
    if backend == "maven" or (backend == "auto" and can_run_jars):
        return kafka_broker(settings, state_dir, console, tie_to_parent)
    if backend == "docker" and not allow_docker:
        raise InfrastructureError(
            "testcontainers' Kafka lives only as long as the process that starts it, so `highway dev up` "
            "cannot leave it running: use docker-compose.yml for a lasting stack"
        )
    if allow_docker and docker_available():
        return DockerKafka()
    raise InfrastructureError(
        "no way to run Kafka here: install Java 17 and Maven (local broker from Maven Central), "
        "run a Docker engine (testcontainers), or set HIGHWAY_KAFKA_BOOTSTRAP to a running broker"
    )


def _choose_s3(settings: Settings, state_dir: Path, tie_to_parent: bool) -> S3Handle:
    own = read_state(state_dir / "s3" / "s3.json").get("port")
    own_endpoint = f"http://127.0.0.1:{own}" if own else None
    if settings.aws_s3_endpoint_url and _explicit(settings, "aws_s3_endpoint_url", own_endpoint):
        return ExternalS3(settings.aws_s3_endpoint_url)
    require_moto()  # before the broker starts: a missing package is the first thing to report
    return S3Server(state_dir / "s3", tie_to_parent=tie_to_parent)
