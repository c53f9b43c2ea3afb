"""The Iceberg Spark runtime jar for a given pyspark, resolved from Maven Central and cached.

``org.apache.iceberg:iceberg-spark-runtime-<spark major.minor>_<scala>:<iceberg version>`` is one
shaded jar (no dependencies to resolve), copied by ``mvn dependency:copy`` into
``<cache>/iceberg-spark/`` once (like the Kafka broker's jars, ``connectors.local.kafka_jars``).
Iceberg publishes a runtime per Spark minor version, and it only runs on that minor: a pyspark whose
minor has no runtime yet is refused with the versions to use instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from connectors.local.kafka_jars import default_cache_root, locked, require_tool
from core.errors import InfrastructureError

DEFAULT_ICEBERG_VERSION = "1.12.0"
SCALA_VERSION = "2.13"  # Spark 4 is built for Scala 2.13 only


def runtime_artifact(spark_version: str, iceberg_version: str = DEFAULT_ICEBERG_VERSION) -> str:
    """``group:artifact:version`` of the runtime for a Spark version such as ``4.1.1`` (pure)."""
    major_minor = ".".join(spark_version.split(".")[:2])
    return f"org.apache.iceberg:iceberg-spark-runtime-{major_minor}_{SCALA_VERSION}:{iceberg_version}"


def resolve_runtime(
    spark_version: str,
    iceberg_version: str = DEFAULT_ICEBERG_VERSION,
    cache_root: Path | None = None,
    timeout_s: float = 600.0,
) -> Path:
    """The cached runtime jar, downloaded with Maven on first use."""
    artifact = runtime_artifact(spark_version, iceberg_version)
    _, name, version = artifact.split(":")
    target = (cache_root or default_cache_root()) / "iceberg-spark"
    jar = target / f"{name}-{version}.jar"
    if jar.exists():
        return jar
    mvn = require_tool("mvn", "download the Iceberg Spark runtime from Maven Central")
    target.mkdir(parents=True, exist_ok=True)
    with locked(target / ".lock"):
        if jar.exists():
            return jar
        log_path = target / f"{name}-{version}.mvn.log"
        command = [mvn, "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={target}"]
        with log_path.open("wb") as log:
            try:
                result = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, cwd=target
                )
            except subprocess.TimeoutExpired as exc:
                raise InfrastructureError(f"Maven ran over {timeout_s:.0f}s; see {log_path}") from exc
    if result.returncode != 0 or not jar.exists():
        raise InfrastructureError(
            f"Maven could not resolve {artifact} (exit {result.returncode}; see {log_path}). Iceberg "
            f"publishes a runtime per Spark minor version and {iceberg_version} may have none for Spark "
            f"{spark_version}: install a pyspark whose minor it supports (Iceberg 1.12.0: Spark 4.1, "
            "`pip install 'pyspark>=4.1,<4.2'`) or pass another Iceberg version."
        )
    return jar
