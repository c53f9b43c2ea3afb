"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) run from Maven jars.

Used by ``highway dev up``, the demo and the pytest session fixtures. Everything lives under one
state directory::

    <state_dir>/server.properties   rendered on every start (ports are kept in broker.json)
    <state_dir>/log4j2.properties   broker logging → <state_dir>/logs/server.log
    <state_dir>/data/               the log dirs, formatted once with kafka.tools.StorageTool
    <state_dir>/broker.json         pid, ports, version, jar dir
    <state_dir>/logs/stdout.log     the JVM's own stdout/stderr

The broker is detached (own session) so it outlives the command that started it. ``stop()`` then
``start()`` on the same object (or the same state dir) restarts the SAME broker: same data, same
ports, so tests can prove nothing is lost across a broker restart.

Defaults suit tests: topic auto-creation is OFF (Highway creates every topic explicitly, so a
forgotten ``ensure_topics`` fails loudly instead of silently creating a 1-partition topic), the first
consumer-group rebalance is not delayed, and messages up to 4 MiB are accepted.
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from rich.console import Console

from connectors.local.kafka_jars import DEFAULT_KAFKA_VERSION, require_tool, resolve_jars
from connectors.local.process import (
    child_preexec,
    free_ports,
    owned_pid_alive,
    port_is_free,
    read_state,
    tail,
    terminate,
    wait_for,
    write_state,
)
from core.errors import InfrastructureError

MAIN_CLASS = "kafka.Kafka"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_HEAP = "768m"
_BIND_ATTEMPTS = 3


def render_server_properties(
    port: int, controller_port: int, data_dir: Path, overrides: Mapping[str, str] | None = None
) -> str:
    """server.properties for a combined-mode single node on 127.0.0.1 (pure)."""
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        # Fewer coordinator partitions: the first consumer group comes up faster on 2 cores.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }
    props.update(overrides or {})
    return "".join(f"{key}={value}\n" for key, value in props.items())


def render_log4j2_config(log_file: Path) -> str:
    """Log4j2 properties: INFO to a size-rolled file, request logging kept quiet (pure)."""
    return "\n".join(
        [
            "status = warn",
            # Kafka's own shutdown hook logs the controlled shutdown; Log4j's hook would stop
            # logging first and lose those lines.
            "shutdownHook = disable",
            "appender.file.type = RollingFile",
            "appender.file.name = file",
            f"appender.file.fileName = {log_file}",
            f"appender.file.filePattern = {log_file}.%i",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 50MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 3",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = file",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "logger.statechange.name = state.change.logger",
            "logger.statechange.level = WARN",
            "",
        ]
    )


def random_cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints: url-safe base64 of 16 random bytes, unpadded."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):  # Kafka avoids ids that look like a command-line flag
            return value


def broker_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a broker at ``bootstrap`` returns cluster metadata with at least one broker."""
    client = AdminClient(
        {"bootstrap.servers": bootstrap, "log_level": 0, "socket.connection.setup.timeout.ms": 1000}
    )
    try:
        return len(client.list_topics(timeout=timeout_s).brokers) > 0
    except Exception:
        return False


class KafkaBroker:
    """A local broker owned through its state directory. Methods block until the change is done."""

    def __init__(
        self,
        state_dir: Path,
        kafka_version: str = DEFAULT_KAFKA_VERSION,
        cache_root: Path | None = None,
        heap: str = DEFAULT_HEAP,
        overrides: Mapping[str, str] | None = None,
        console: Console | None = None,
        tie_to_parent: bool = False,
    ) -> None:
        """``tie_to_parent``: the broker dies with the process that starts it (test sessions)."""
        self.state_dir = state_dir.resolve()
        self.tie_to_parent = tie_to_parent
        self.kafka_version = kafka_version
        self.cache_root = cache_root
        self.heap = heap
        self.overrides = dict(overrides or {})
        self.console = console or Console(stderr=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        state = read_state(self.state_file)
        self.port: int | None = state.get("port")
        self.controller_port: int | None = state.get("controller_port")
        self.pid: int | None = state.get("pid")

    # --- paths -----------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "broker.json"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.state_dir / "logs" / "stdout.log"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise InfrastructureError(f"the broker in {self.state_dir} has never been started")
        return f"127.0.0.1:{self.port}"

    @property
    def restartable(self) -> bool:
        return True

    # --- lifecycle -------------------------------------------------------------------------
    def is_running(self) -> bool:
        if self._proc is not None:
            if self._proc.poll() is None:
                return True  # our own child, still running
            self._proc = None  # reaped: a zombie would otherwise look alive
        return owned_pid_alive(self.pid, str(self.properties_file))

    def start(self, timeout_s: float = 90.0) -> KafkaBroker:
        """Start the broker (no-op when it already runs) and wait until it answers metadata."""
        if self.is_running():
            self._wait_ready(timeout_s)
            return self
        java = require_tool("java", "run the Kafka broker")
        jars = resolve_jars(self.cache_root, self.kafka_version, self.console)
        self._choose_ports()
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            started = time.monotonic()
            self._launch(java, f"{jars}/*")
            try:
                self._wait_ready(timeout_s)
                break
            except InfrastructureError:
                # Another process may bind a port between our check and the broker's bind.
                if attempt == _BIND_ATTEMPTS or self.is_running() or not self._bind_failed():
                    raise
                self.console.print(f"port {self.port} or {self.controller_port} was taken; trying others")
                self.port, self.controller_port = free_ports(2)
        self._save(started_at=time.time(), start_seconds=round(time.monotonic() - started, 2))
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM, then SIGKILL after ``grace_s``); data and ports are kept."""
        if self.pid is not None:
            terminate(self.pid, str(self.properties_file), grace_s)
        if self._proc is not None:
            self._proc.wait(10)
            self._proc = None
        if self.state_file.exists():
            self._save(pid=None)

    def restart(self) -> KafkaBroker:
        self.stop()
        return self.start()

    def describe(self) -> dict[str, Any]:
        return {
            "service": "kafka",
            "running": self.is_running(),
            "bootstrap": f"127.0.0.1:{self.port}" if self.port else None,
            "controller_port": self.controller_port,
            "pid": self.pid if self.is_running() else None,
            "version": read_state(self.state_file).get("version", self.kafka_version),
            "log": str(self.log_file),
            "data": str(self.data_dir),
        }

    # --- internals -------------------------------------------------------------------------
    def _launch(self, java: str, classpath: str) -> None:
        assert self.port is not None
        assert self.controller_port is not None
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            render_server_properties(self.port, self.controller_port, self.data_dir, self.overrides)
        )
        log4j = self.state_dir / "log4j2.properties"
        log4j.write_text(render_log4j2_config(self.log_file))
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, classpath, log4j)
        command = [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            classpath,
            MAIN_CLASS,
            str(self.properties_file),
        ]
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.stdout_file.open("ab") as out:
            self._proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=child_preexec(self.tie_to_parent),
            )
        self.pid = self._proc.pid
        self._save(started_at=time.time())

    def _bind_failed(self) -> bool:
        """Did the attempt just made die on a port someone else holds? (reads only its own log)"""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                return b"Address already in use" in log.read()
        except FileNotFoundError:
            return False

    def _choose_ports(self) -> None:
        # Keep the recorded ports (a restart must look like the same broker); pick new ones only
        # when another process took them while the broker was down.
        if (
            self.port is not None
            and self.controller_port is not None
            and port_is_free(self.port)
            and port_is_free(self.controller_port)
        ):
            return
        self.port, self.controller_port = free_ports(2)

    def _format(self, java: str, classpath: str, log4j: Path) -> None:
        command = [
            java,
            "-Xmx256m",
            # A one-shot tool: the quick JIT tier and serial GC start fastest on a busy 2-core box.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            random_cluster_id(),
            "-c",
            str(self.properties_file),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise InfrastructureError(
                f"formatting Kafka storage in {self.data_dir} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )

    def _wait_ready(self, timeout_s: float) -> None:
        bootstrap = self.bootstrap

        def ready() -> bool:
            if not self.is_running():
                raise InfrastructureError(
                    f"the Kafka broker exited during start-up; last log lines of {self.log_file}:\n"
                    f"{tail(self.log_file)}\n{tail(self.stdout_file, 10)}"
                )
            return broker_answers(bootstrap)

        if not wait_for(ready, timeout_s, 0.25):
            raise InfrastructureError(
                f"the Kafka broker at {bootstrap} did not answer within {timeout_s:.0f}s; see {self.log_file}"
            )

    def _save(self, **extra: Any) -> None:
        state = read_state(self.state_file)
        state.update(
            {
                "port": self.port,
                "controller_port": self.controller_port,
                "pid": self.pid,
                "version": self.kafka_version,
                "properties": str(self.properties_file),
                "log": str(self.log_file),
            }
        )
        state.update(extra)
        if state.get("pid") is None:
            self.pid = None
        write_state(self.state_file, state)
