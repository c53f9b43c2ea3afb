"""librdkafka's log lines go through Python logging, at sane levels, without repeats."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from connectors.kafka_config import producer_config
from connectors.kafka_logging import LOGGER_NAME, LibrdkafkaLog, effective_level, throttle_aiokafka_logs
from tests.conftest import isolated_settings

REFUSED = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms)"


def test_unreachable_broker_is_info_but_credentials_stay_errors() -> None:
    assert effective_level("FAIL", REFUSED, logging.ERROR) == logging.INFO
    assert effective_level("FAIL", "1/1 brokers are down", logging.ERROR) == logging.INFO
    handshake = "broker:9093/bootstrap: SSL handshake failed: certificate verify failed"
    assert effective_level("FAIL", handshake, logging.ERROR) == logging.ERROR
    sasl = "broker:9092/bootstrap: SASL authentication error: Authentication failed (after 5ms)"
    assert effective_level("FAIL", sasl, logging.ERROR) == logging.ERROR
    assert effective_level("CONFWARN", "Configuration property x is a consumer property", 30) == 30


def test_repeats_are_left_out_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    adapter = LibrdkafkaLog(logging.getLogger("test.librdkafka"), window_s=3600)
    with caplog.at_level(logging.DEBUG, "test.librdkafka"):
        for _ in range(50):
            adapter.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "SSL handshake failed")
        adapter.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-2", "SSL handshake failed")
        for _ in range(3):
            adapter.log(logging.DEBUG, "%s [%s] %s", "BROKER", "rdkafka#producer-1", "debug line")
    lines = [record.getMessage() for record in caplog.records]
    assert lines.count("librdkafka FAIL [rdkafka#producer-1] SSL handshake failed") == 1
    assert lines.count("librdkafka FAIL [rdkafka#producer-2] SSL handshake failed") == 1
    assert lines.count("librdkafka BROKER [rdkafka#producer-1] debug line") == 3  # asked for: all of them
    adapter._throttle.window_s = 0
    with caplog.at_level(logging.DEBUG, "test.librdkafka"):
        adapter.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "SSL handshake failed")
    assert caplog.records[-1].getMessage().endswith("(49 more like it in the last 0s left out)")


def test_a_producer_without_broker_logs_through_python_at_info(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    producer = Producer(producer_config(isolated_settings(kafka_bootstrap="127.0.0.1:1")))
    with caplog.at_level(logging.DEBUG, LOGGER_NAME):
        producer.produce("t", b"x")
        producer.flush(2.0)  # librdkafka reconnects every few ms meanwhile
    ours = [record for record in caplog.records if record.name == LOGGER_NAME]
    assert ours, "librdkafka's lines should reach Python logging"
    assert all(record.levelno <= logging.INFO for record in ours)
    assert len([record for record in ours if "Connection refused" in record.getMessage()]) == 1
    assert "Connection refused" not in capfd.readouterr().err  # nothing written past Python logging
    producer.purge()


def test_aiokafka_connection_errors_are_info_and_said_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("aiokafka.test_throttle")
    logger.propagate = True
    throttle_aiokafka_logs(window_s=3600)
    with caplog.at_level(logging.DEBUG, logger="aiokafka"):
        for _ in range(50):
            logger.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
        logger.error("Unexpected error in the fetcher: %s", "boom")
        logger.info("Joined group %r", "g")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "aiokafka.test_throttle"]
    assert lines == [
        ("INFO", "Unable connect to node with id 1: [Errno 111] Connect call failed"),
        ("ERROR", "Unexpected error in the fetcher: boom"),
        ("INFO", "Joined group 'g'"),
    ]
