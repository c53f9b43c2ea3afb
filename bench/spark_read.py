"""Read every table of a lake with Apache Spark and compare its row count with the truth.

Stand-alone on purpose: it imports only the standard library and ``pyspark``, so it runs in a
virtualenv that holds pyspark and nothing of Highway (pyspark is not a Highway dependency)::

    python bench/spark_read.py PLAN.json RESULT.json

``PLAN.json`` (written by ``bench.spark_check``)::

    {"format": "parquet" | "iceberg", "iceberg_jar": "/path/iceberg-spark-runtime-….jar" | null,
     "tables": [{"table": "…", "expected": 123, "location": "file:///…"}]}

``location`` is the table directory for ``parquet`` (read with ``mergeSchema``, as a Spark user
would) and the table's current ``metadata.json`` for ``iceberg`` (read by the Iceberg Spark runtime
as a path-based table: the metadata file names the schema, the snapshot and its data files, so no
catalog is needed on Spark's side). Every value of every column is decoded (a hash over all
columns is summed), not only counted. ``RESULT.json`` gets one entry per table: rows read (or the
error), columns, typed sibling columns. Exit status 0 only when every table was read with the
expected number of rows.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def spark_session(iceberg_jar: str | None) -> Any:
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[1]")
        .appName("highway-spark-check")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "768m")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.iceberg.aggregate-push-down.enabled", "false")
    )
    if iceberg_jar:
        builder = builder.config("spark.jars", iceberg_jar).config(
            "spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
        )
    return builder.getOrCreate()


def read_table(spark: Any, lake_format: str, location: str) -> Any:
    if lake_format == "iceberg":
        return spark.read.format("iceberg").load(location)
    return spark.read.option("mergeSchema", "true").parquet(location)


def check(plan: dict[str, Any]) -> list[dict[str, Any]]:
    spark = spark_session(plan.get("iceberg_jar"))
    spark.sparkContext.setLogLevel("ERROR")
    results: list[dict[str, Any]] = []
    try:
        for entry in plan["tables"]:
            result: dict[str, Any] = {"table": entry["table"], "expected": entry["expected"]}
            try:
                frame = read_table(spark, plan["format"], entry["location"])
                # count() alone may come from metadata; hashing every column decodes every value
                # (PLAIN ids, DELTA_BINARY_PACKED times and offsets, dictionaries), as a query would.
                read = frame.selectExpr("count(*) AS rows", "sum(hash(*) % 1000) AS digest").collect()[0]
                result["rows"] = read["rows"]
                result["columns"] = len(frame.columns)
                result["siblings"] = sum(1 for c in frame.columns if c.startswith("p_") and "__" in c)
            except Exception as exc:  # any read failure is a result of the check, not a crash
                result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            result["ok"] = result.get("rows") == entry["expected"]
            results.append(result)
    finally:
        spark.stop()
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as handle:
        plan = json.load(handle)
    results = check(plan)
    with open(argv[2], "w") as handle:
        json.dump(results, handle, indent=1)
    return 0 if all(result["ok"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
