"""Ownership of lake partitions on the real broker and moto's S3 server: a zombie writer is fenced and
nothing is lost or doubled; a new topic takes no partition (and no buffer) away.

Two ``highway worker --role lake`` processes share the lake group. Worker A reaches S3 through a
door this test can shut. With traffic flowing, the door shuts: A blocks inside a flush, retrying.
A is then paused (SIGSTOP) past the session timeout, so the group hands its partitions to B, which
claims them and writes on. When S3 and A come back, A's flush finishes its data files and its
manifest write is refused (412): A is fenced — it deletes that flush's files, commits nothing,
and says so (log line, ``highway_lake_fenced_total``). At the end the lake holds every produced
event exactly once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from connectors.lake_fs import LakeStore
from connectors.local.process import free_ports
from core.envvars import with_overrides
from core.lake.manifest import Manifest
from core.lake.ports import PreconditionFailed
from core.settings import Settings
from tests.conftest import MakeSettings
from tests.integration.test_lake import (
    LAKE_SETTINGS,
    BackgroundTraffic,
    Produced,
    lake_report,
    lake_state,
    produce_events,
    wait_for_lake,
)
from tests.integration.test_lake_chaos import team_events
from tests.support import WorkerProcess, health, wait_until

pytestmark = pytest.mark.integration


class Door:
    """A TCP forwarder to an upstream endpoint that can be shut (new connections refused, open ones
    reset) and opened again on the same port: S3 going away for one process only."""

    def __init__(self, upstream: str) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> Door:
        if self._listener is not None:
            return self
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def shut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(256 * 1024):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def owners(settings: Settings) -> dict[str, str]:
    """Manifest key → the writer that holds it (``host-pid-…``)."""
    store = LakeStore(settings)
    keys = store.list_keys(f"{settings.lanes[0]}/_manifests/")
    found = {key: store.get(key) for key in keys if key.endswith(".json")}
    return {key: Manifest.from_bytes(data).owner for key, data in found.items() if data}


def status(worker: WorkerProcess) -> str | None:
    """The worker's overall /health status (``ok``/``degraded``/``failed``), None while it does not answer."""
    return health(worker)[1].get("status")


def metric(worker: WorkerProcess, name: str) -> float:
    text = httpx.get(f"{worker.base_url}/metrics", timeout=5).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    return values[0] if values else 0.0


@pytest.mark.parametrize("where", ["s3", "file"])
def test_conditional_writes_refuse_a_stale_version(
    make_settings: MakeSettings, tmp_path: Path, where: str
) -> None:
    """``LakeStore.put_if`` against moto's S3 server (If-None-Match / If-Match) and a local lake."""
    settings = make_settings()
    if where == "file":
        settings = with_overrides(settings, lake_uri=f"file://{tmp_path}/lake")
    store = LakeStore(settings)
    key = "l/_manifests/t/00000.json"
    first = store.put_if(key, b"one", None)
    with pytest.raises(PreconditionFailed):
        store.put_if(key, b"again", None)  # it exists already
    second = store.put_if(key, b"two", first)
    with pytest.raises(PreconditionFailed):
        store.put_if(key, b"stale", first)  # someone wrote since
    with pytest.raises(PreconditionFailed):
        store.put_if("l/_manifests/t/00001.json", b"gone", first)  # If-Match on a missing object
    assert store.get_tagged(key) == (b"two", second)
    assert store.list_keys("l/_manifests/t/0000") == [key]  # a name prefix, as on S3


EVENT_TYPES = 8


class TwoWriters:
    """Two lake workers sharing the group: ``cut_off`` reaches S3 through a door this test can shut."""

    def __init__(self, settings: Settings) -> None:
        assert settings.aws_s3_endpoint_url is not None
        self.door = Door(settings.aws_s3_endpoint_url).open()
        self.cut_off = WorkerProcess(
            with_overrides(settings, aws_s3_endpoint_url=self.door.url), roles="lake"
        )
        self.owner = WorkerProcess(with_overrides(settings, http_port=free_ports(1)[0]), roles="lake")

    def start_both_writing(self) -> None:
        for worker in (self.cut_off, self.owner):
            worker.start()
            worker.wait_healthy()

        def both_working() -> bool:
            states = lake_state(self.cut_off), lake_state(self.owner)
            assigned = sum(state["assigned"] for state in states)
            return assigned == 2 * EVENT_TYPES and all(s["rows"] > 0 and s["assigned"] for s in states)

        wait_until(both_working, 90, 0.5, "both workers assigned and writing")

    def stop(self) -> None:
        for worker in (self.cut_off, self.owner):
            if worker.alive() and worker.proc is not None:
                os.killpg(worker.proc.pid, signal.SIGCONT)
            worker.stop()
        self.door.shut()


def test_a_zombie_writer_is_fenced_and_nothing_is_lost_or_duplicated(make_settings: MakeSettings) -> None:
    settings = make_settings(**{**LAKE_SETTINGS, "topic_partitions": 2, "lake_format": "parquet"})
    writers = TwoWriters(settings)
    door, zombie, owner = writers.door, writers.cut_off, writers.owner
    try:
        with BackgroundTraffic(settings, event_types=EVENT_TYPES, batch=200, pause_s=0.1) as traffic:
            writers.start_both_writing()
            retries = lake_state(zombie)["s3_retries"]
            door.shut()  # S3 goes away for the zombie only
            wait_until(
                lambda: lake_state(zombie)["s3_retries"] > retries, 30, 0.2, "the zombie stuck in a flush"
            )
            assert zombie.proc is not None
            zombie_writer = f"{socket.gethostname()}-{zombie.proc.pid}-"
            os.killpg(zombie.proc.pid, signal.SIGSTOP)  # past the session timeout: the group moves on
            try:

                def owner_holds_everything() -> bool:
                    held = owners(settings)
                    return len(held) == 2 * EVENT_TYPES and not any(
                        writer.startswith(zombie_writer) for writer in held.values()
                    )

                wait_until(owner_holds_everything, 60, 0.5, "the owner claiming the zombie's partitions")
                rows = lake_state(owner)["rows"]
                wait_until(lambda: lake_state(owner)["rows"] > rows, 30, 0.5, "the owner writing on")
            finally:
                door.open()
                os.killpg(zombie.proc.pid, signal.SIGCONT)
            wait_until(lambda: lake_state(zombie)["fenced"] > 0, 60, 0.5, "the zombie fenced")
            assert metric(zombie, "highway_lake_fenced_total") > 0
            rows = lake_state(zombie)["rows"]
            wait_until(lambda: lake_state(zombie)["rows"] > rows, 60, 0.5, "the zombie back at work")
            produced = traffic.stop()
        report = wait_for_lake(settings, produced, timeout_s=120)
        assert zombie.alive()
        assert owner.alive()
    finally:
        writers.stop()
    log = (zombie.log_dir / f"worker-{settings.http_port}-1.log").read_text(errors="replace")
    assert "FENCED out of" in log
    print(f"zombie fencing: {produced.total} events, {report}")
    assert report.ok, report
    assert report.missing == 0
    assert report.duplicates == 0
    assert report.found == produced.total


def test_an_iceberg_writer_cut_off_from_s3_and_paused_loses_and_duplicates_nothing(
    make_settings: MakeSettings,
) -> None:
    """The Iceberg lake in the same situation: S3 away for one of two workers for longer than the
    poll interval, that worker paused past the session timeout while its flush fails, its tables
    taken over and written on by the other, then S3 and the worker back. Whether the returning
    worker's flush is fenced by the owner's newer snapshots or its partitions are taken from it
    first depends on timing; either way the tables hold every event exactly once."""
    settings = make_settings(**{**LAKE_SETTINGS, "topic_partitions": 2, "lake_format": "iceberg"})
    writers = TwoWriters(settings)
    door, cut_off, owner = writers.door, writers.cut_off, writers.owner
    try:
        with BackgroundTraffic(settings, event_types=EVENT_TYPES, batch=200, pause_s=0.1) as traffic:
            writers.start_both_writing()
            door.shut()
            wait_until(
                lambda: status(cut_off) == "degraded", 60, 0.5, "the cut-off worker reporting degraded"
            )
            assert cut_off.proc is not None
            os.killpg(cut_off.proc.pid, signal.SIGSTOP)  # past the session timeout: the group moves on
            try:
                wait_until(
                    lambda: lake_state(owner)["assigned"] == 2 * EVENT_TYPES,
                    90,
                    0.5,
                    "the owner assigned every partition",
                )
                rows = lake_state(owner)["rows"]
                wait_until(lambda: lake_state(owner)["rows"] > rows, 30, 0.5, "the owner writing on")
            finally:
                door.open()
                os.killpg(cut_off.proc.pid, signal.SIGCONT)
            wait_until(lambda: status(cut_off) == "ok", 90, 0.5, "the returning worker healthy again")
            wait_until(lambda: lake_state(cut_off)["assigned"] > 0, 90, 0.5, "the returning worker assigned")
            rows = lake_state(cut_off)["rows"]
            wait_until(lambda: lake_state(cut_off)["rows"] > rows, 60, 0.5, "the returning worker writing")
            produced = traffic.stop()
        report = wait_for_lake(settings, produced, timeout_s=120)
        fenced = lake_state(cut_off)["fenced"], lake_state(owner)["fenced"]
        assert cut_off.alive()
        assert owner.alive()
    finally:
        writers.stop()
    print(f"iceberg cut off: {produced.total} events, fenced (returning, owner) {fenced}, {report}")
    assert report.ok, report
    assert (report.found, report.missing, report.duplicates) == (produced.total, 0, 0)


def test_a_new_topic_takes_no_partition_and_no_buffer_away(make_settings: MakeSettings) -> None:
    """Cooperative-sticky: the new topic's partitions are added; the others are neither revoked
    (which would flush them early) nor dropped (which would replay them)."""
    settings = make_settings(**{**LAKE_SETTINGS, "lake_flush_age_s": 600.0, "lake_topic_rescan_s": 1.0})
    produced = Produced()
    produce_events(settings, team_events("team_create", 50), produced)
    with WorkerProcess(settings, roles="lake") as worker:
        worker.wait_healthy()
        wait_until(lambda: lake_state(worker)["buffered_rows"] == 50, 60, 0.2, "the first type buffered")
        assigned = lake_state(worker)["assigned"]
        produce_events(
            settings,
            [{**e, "event_id": f"w{i}"} for i, e in enumerate(team_events("wallet_topup", 30))],
            produced,
        )

        def new_topic_read() -> bool:
            state = lake_state(worker)
            return bool(state["assigned"] > assigned and state["buffered_rows"] == 80)

        wait_until(new_topic_read, 60, 0.2, "the new topic assigned and buffered next to the first")
        state = lake_state(worker)
        assert state["rows"] == 0, state  # nothing flushed early: no revocation
        assert "revoked" not in state["flush_reasons"], state
    report = lake_report(settings, produced)  # the final flush at stop wrote both
    assert report.ok, report
    assert report.found == 80
