"""`highway bench spark`: Apache Spark reads every table of a lake whose properties changed type.

The acceptance check of issue 10, repeatable. For each lake format (``parquet``, ``iceberg``), on a
fresh lane and a ``file://`` lake under the work directory:

1. simulator events are produced to their per-event topics with their properties drifting in three
   phases — as generated, then every integer as a float (``7`` → ``7.5``), then every integer as a
   string (``"7"``) or an object (``{"value": 7}``) — so each table's columns meet every change;
2. a real ``highway worker --role lake`` writes them, one phase at a time: the next phase is
   produced only when the previous one is durable, so every phase lands in its own files (parquet)
   or snapshots (iceberg) and each table's columns change type across files, not within one;
3. ``bench/spark_read.py`` runs under the Python that has pyspark (pyspark is not a Highway
   dependency) and reads every table — Parquet with ``mergeSchema``, Iceberg through the Iceberg Spark
   runtime resolved from Maven Central (``connectors.local.spark_jars``) from the table's current
   metadata file — and counts its rows;
4. the counts are compared with the truth (what was produced, per table): any missing or extra
   table, read failure or different count fails the check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from bench.baseline import SettingsFor, bench_settings, spawn
from bench.lake_run import CommittedCounter
from connectors.iceberg_catalog import LakeTables
from connectors.kafka_admin import KafkaAdmin
from connectors.lake_fs import LakeStore
from connectors.local.spark_jars import DEFAULT_ICEBERG_VERSION, resolve_runtime
from connectors.producer import EventProducer
from core.lake.layout import is_event_table
from core.routing.naming import topic_name_for
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig

console = Console()
READER = Path(__file__).with_name("spark_read.py")
FORMATS = ("parquet", "iceberg")


def drift(value: Any, phase: int, index: int) -> Any:
    """The value as the phase's producer sends it: integers become floats (phase 1), then strings or
    objects (phase 2); everything else is unchanged."""
    if phase == 0 or isinstance(value, bool) or not isinstance(value, int):
        return value
    if phase == 1:
        return value + 0.5
    return str(value) if index % 2 else {"value": value}


def drifted_phases(config: SimConfig, batch: int = 1_000) -> list[list[dict[str, Any]]]:
    """The simulator's events in three phases of equal size, each with its drift applied."""
    events = [event for chunk in MatchDaySimulator(config).batches(batch) for event in chunk]
    phases: list[list[dict[str, Any]]] = [[], [], []]
    for index, event in enumerate(events):
        phase = index * 3 // len(events)
        event["properties"] = {
            key: drift(value, phase, index) for key, value in event.get("properties", {}).items()
        }
        phases[phase].append(event)
    return phases


def produce(settings: Settings, lane: str, events: list[dict[str, Any]]) -> None:
    """Produce in order to the per-event topics (created beforehand)."""
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_topic.setdefault(settings.event_topic(lane, topic_name_for(event["event_name"])), []).append(event)
    with EventProducer(settings) as producer:
        for topic, batch in by_topic.items():
            producer.produce_events(topic, batch)


def durable_rows(counter: CommittedCounter) -> int:
    """The lake group's committed offsets, or -1 while the broker cannot say (a fresh broker's group
    coordinator still loading: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS), to ask again."""
    try:
        return counter()
    except KafkaException:
        return -1


def write_phases(
    settings: Settings, lane: str, phases: list[list[dict[str, Any]]], log: Path, timeout_s: float = 300
) -> dict[str, int]:
    """Run a lake worker through the phases, each durable before the next is produced; returns
    the truth: rows per table."""
    truth: dict[str, int] = {}
    for event in (event for phase in phases for event in phase):
        table = topic_name_for(event["event_name"])
        truth[table] = truth.get(table, 0) + 1
    KafkaAdmin(settings).ensure_topics([settings.event_topic(lane, table) for table in truth])
    produce(settings, lane, phases[0])  # also waits for the new topics' leaders
    counter = CommittedCounter(settings, lane)
    worker = spawn(settings, ["highway.cli", "worker", "--role", "lake"], log)
    try:
        durable = 0
        for number, phase in enumerate(phases):
            if number:
                produce(settings, lane, phase)
            durable += len(phase)
            deadline = time.monotonic() + timeout_s
            while durable_rows(counter) < durable:
                if worker.poll() is not None:
                    raise RuntimeError(f"the lake worker exited (code {worker.returncode}); see {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"phase {number} was not durable within {timeout_s:.0f}s; see {log}")
                time.sleep(0.2)
    finally:
        counter.close()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
    return truth


def table_locations(settings: Settings, lane: str) -> dict[str, tuple[str, int]]:
    """Every event table the lake holds → what Spark reads — the table directory (parquet) or the current
    metadata file (iceberg) — and how many writes made it: data files or snapshots."""
    locations: dict[str, tuple[str, int]] = {}
    if settings.lake_format == "iceberg":
        tables = LakeTables(settings)
        for name in filter(is_event_table, tables.names(lane)):
            loaded = tables.load(lane, name)
            if loaded is not None:
                locations[name] = (loaded.metadata_location, len(loaded.snapshots()))
        return locations
    root = settings.lake_uri.removesuffix("/")
    keys = LakeStore(settings).list_keys(f"{lane}/")
    for key in keys:
        parts = key.split("/")
        if (
            len(parts) > 2
            and not parts[1].startswith("_")
            and is_event_table(parts[1])
            and key.endswith(".parquet")
        ):
            _, files = locations.get(parts[1], ("", 0))
            locations[parts[1]] = (f"{root}/{lane}/{parts[1]}", files + 1)
    return locations


@dataclass
class FormatResult:
    lake_format: str
    events: int
    rows: list[dict[str, Any]]  # one per table: table, expected, rows | error, columns, siblings, ok
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row["ok"] for row in self.rows)


def compare(truth: dict[str, int], read: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reader's results with every table of the truth that the lake lacks added as failures."""
    seen = {row["table"] for row in read}
    missing = [
        {"table": table, "expected": count, "error": "not in the lake", "ok": False}
        for table, count in sorted(truth.items())
        if table not in seen
    ]
    return sorted(read + missing, key=lambda row: row["table"])


def run_spark_reader(spark_python: str, plan: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    plan_path, result_path = work / "spark-plan.json", work / "spark-result.json"
    plan_path.write_text(json.dumps(plan))
    with (work / "spark.log").open("wb") as log:
        command = [spark_python, str(READER), str(plan_path), str(result_path)]
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if not result_path.exists():
        raise RuntimeError(f"the Spark reader failed (exit {process.returncode}); see {work / 'spark.log'}")
    result: list[dict[str, Any]] = json.loads(result_path.read_text())
    return result


def spark_version(spark_python: str) -> str:
    found = subprocess.run(
        [spark_python, "-c", "import pyspark; print(pyspark.__version__)"], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise RuntimeError(f"{spark_python} cannot import pyspark: {found.stderr.strip()[-300:]}")
    return found.stdout.strip()


def check_format(
    base: Settings,
    lake_format: str,
    spark_python: str,
    work: Path,
    events: int,
    event_types: int,
    iceberg_version: str = DEFAULT_ICEBERG_VERSION,
) -> FormatResult:
    started = time.monotonic()
    fmt_work = work / lake_format
    settings = bench_settings(
        base,
        f"spark{lake_format[:3]}",
        fmt_work,
        lake_format=lake_format,
        lake_uri=f"file://{(fmt_work / 'lake').absolute()}",
        lake_catalog="none",
        lake_iceberg_catalog_path=None,
        lake_flush_age_s=1.0,
        topic_partitions=2,
    )
    lane = settings.lanes[0]
    config = SimConfig(
        start_ms=int(time.time() * 1000) - 3_600_000,
        seed=10,
        users=500,
        event_types=event_types,
        events=events,
        lane=lane,
    )
    admin = KafkaAdmin(settings)
    try:
        phases = drifted_phases(config)
        console.print(f"{lake_format}: lake worker → {settings.lake_uri}, one phase at a time …")
        truth = write_phases(settings, lane, phases, fmt_work / "worker.log")
    finally:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"{lane}.")])
    locations = table_locations(settings, lane)
    jar = None
    if lake_format == "iceberg":
        jar = str(resolve_runtime(spark_version(spark_python), iceberg_version))
    plan = {
        "format": lake_format,
        "iceberg_jar": jar,
        "tables": [
            {"table": name, "expected": truth.get(name, 0), "location": location}
            for name, (location, _) in sorted(locations.items())
        ],
    }
    console.print(f"{lake_format}: Spark reads {len(locations)} tables …")
    rows = compare(truth, run_spark_reader(spark_python, plan, fmt_work))
    for row in rows:
        row["writes"] = locations.get(row["table"], ("", 0))[1]
    return FormatResult(lake_format, sum(truth.values()), rows, time.monotonic() - started)


def render(results: list[FormatResult]) -> Table:
    table = Table(title="Spark reads the lake (rows read vs the truth)")
    headers = ("format", "table", "files/snapshots", "truth", "Spark rows", "columns", "siblings", "result")
    for column in headers:
        table.add_column(column)
    for result in results:
        for row in result.rows:
            table.add_row(
                result.lake_format,
                row["table"],
                str(row["writes"]),
                str(row["expected"]),
                str(row.get("rows", "-")),
                str(row.get("columns", "-")),
                str(row.get("siblings", "-")),
                "ok" if row["ok"] else f"FAIL {row.get('error', '')}".strip(),
            )
    return table


def summary(result: FormatResult) -> str:
    ok = sum(1 for row in result.rows if row["ok"])
    read = sum(row.get("rows", 0) for row in result.rows)
    siblings = sum(row.get("siblings", 0) for row in result.rows)
    verdict = "PASS" if result.ok else "FAIL"
    return (
        f"{result.lake_format}: {verdict} — {ok}/{len(result.rows)} tables with the truth's row count, "
        f"{read}/{result.events} rows read, {siblings} typed sibling columns ({result.seconds:.0f} s)"
    )


def run_check(
    base: Settings,
    spark_python: str,
    work: Path,
    formats: tuple[str, ...] = FORMATS,
    events: int = 6_000,
    event_types: int = 30,
    iceberg_version: str = DEFAULT_ICEBERG_VERSION,
) -> list[FormatResult]:
    return [
        check_format(base, lake_format, spark_python, work, events, event_types, iceberg_version)
        for lake_format in formats
    ]


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("spark")
    def spark(
        ctx: typer.Context,
        spark_python: Annotated[
            str, typer.Option("--spark-python", help="a Python that can `import pyspark` (e.g. a venv's)")
        ],
        formats: Annotated[str, typer.Option(help="lake formats: parquet,iceberg")] = "parquet,iceberg",
        events: Annotated[int, typer.Option("--events", "-n", help="events per format")] = 6_000,
        event_types: Annotated[int, typer.Option("--event-types", help="event types (tables)")] = 30,
        iceberg_version: Annotated[
            str, typer.Option(help="Iceberg version of the Spark runtime jar")
        ] = DEFAULT_ICEBERG_VERSION,
        keep: Annotated[Path | None, typer.Option(help="write the lakes here and keep them")] = None,
    ) -> None:
        """Apache Spark reads every table of a lake whose properties changed type (int → float →
        string/object), with the truth's row count; exit 1 otherwise."""
        chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
        unknown = set(chosen) - set(FORMATS)
        if unknown:
            raise typer.BadParameter(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
        settings = settings_for(ctx)
        with tempfile.TemporaryDirectory(prefix="highway-bench-spark-") as temporary:
            work = keep or Path(temporary)
            results = run_check(settings, spark_python, work, chosen, events, event_types, iceberg_version)
            Console(width=max(console.width, 160)).print(render(results))
        for result in results:
            console.print(summary(result))
        if not all(result.ok for result in results):
            raise typer.Exit(1)
