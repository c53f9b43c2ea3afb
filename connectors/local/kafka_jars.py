"""The Kafka broker's classpath, resolved from Maven Central with the machine's ``mvn`` and cached.

``org.apache.kafka:kafka_2.13`` and its runtime dependencies plus a Log4j2 backend are copied by
``mvn dependency:copy-dependencies`` into ``<cache>/kafka-<version>/jars`` once, then reused. The pom
is a package resource (``connectors/kafka-broker-pom.xml``). Resolution is serialised with a file
lock so that concurrent test sessions share one download.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from rich.console import Console

from core.errors import InfrastructureError

DEFAULT_KAFKA_VERSION = "4.1.1"
# Kafka 4.1 ships slf4j-api 1.7.x: the matching Log4j2 binding is log4j-slf4j-impl (not -slf4j2-).
LOG4J_VERSION = "2.24.3"
_COMPLETE_MARKER = ".complete"


def default_cache_root() -> Path:
    return Path.home() / ".cache" / "highway"


def render_pom(kafka_version: str, log4j_version: str = LOG4J_VERSION) -> str:
    """The resolver pom for one broker version (pure)."""
    template = resources.files("connectors.local").joinpath("kafka-broker-pom.xml").read_text()
    return template.replace("@KAFKA_VERSION@", kafka_version).replace("@LOG4J_VERSION@", log4j_version)


def jars_dir(cache_root: Path, kafka_version: str) -> Path:
    return cache_root / f"kafka-{kafka_version}" / "jars"


def cached_jars(cache_root: Path, kafka_version: str) -> Path | None:
    """The cached classpath directory when a previous resolution completed, else None."""
    target = jars_dir(cache_root, kafka_version)
    return target if (target / _COMPLETE_MARKER).exists() else None


def require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfrastructureError(
            f"`{name}` is not on PATH; it is needed to {purpose}. Install a Java 17 JDK and Maven "
            "(e.g. `apt-get install openjdk-17-jdk-headless maven`), or point HIGHWAY_KAFKA_BOOTSTRAP "
            "at a running broker."
        )
    return path


def resolve_jars(
    cache_root: Path | None = None,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    console: Console | None = None,
    timeout_s: float = 600.0,
) -> Path:
    """Return the broker classpath directory, resolving it with Maven on first use."""
    root = cache_root or default_cache_root()
    found = cached_jars(root, kafka_version)
    if found is not None:
        return found
    mvn = require_tool("mvn", "download the Kafka broker from Maven Central")
    require_tool("java", "run the Kafka broker")
    version_dir = root / f"kafka-{kafka_version}"
    version_dir.mkdir(parents=True, exist_ok=True)
    with locked(version_dir / ".lock"):
        found = cached_jars(root, kafka_version)  # another process may have finished meanwhile
        if found is not None:
            return found
        return _run_maven(mvn, version_dir, kafka_version, console or Console(stderr=True), timeout_s)


def _run_maven(mvn: str, version_dir: Path, kafka_version: str, console: Console, timeout_s: float) -> Path:
    pom = version_dir / "pom.xml"
    pom.write_text(render_pom(kafka_version))
    staging = version_dir / "jars.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log_path = version_dir / "mvn.log"
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    started = time.monotonic()
    with (
        console.status(f"Resolving Apache Kafka {kafka_version} from Maven Central (once)…"),
        log_path.open("wb") as log,
    ):
        try:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise InfrastructureError(f"Maven did not finish in {timeout_s:.0f}s; see {log_path}") from exc
    if result.returncode != 0:
        raise InfrastructureError(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{kafka_version} "
            f"(exit {result.returncode}); see {log_path}"
        )
    if not any(staging.glob(f"kafka_2.13-{kafka_version}.jar")):
        raise InfrastructureError(f"Maven finished but {staging} holds no kafka_2.13 jar; see {log_path}")
    target = jars_dir(version_dir.parent, kafka_version)
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    (target / _COMPLETE_MARKER).write_text(f"{kafka_version}\n")
    count = len(list(target.glob("*.jar")))
    console.print(f"Resolved {count} jars into {target} in {time.monotonic() - started:.1f}s")
    return target


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
