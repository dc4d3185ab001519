"""Kafka breadth: extra client properties checked against aiokafka's constructors at start (every problem named at
once), passed through to the clients, and SASL OAUTHBEARER with a token file read again when it changes. The same on
real brokers: tests/broker/test_kafka_options_broker.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from stream.errors import ConfigError
from stream.kafka_options import TokenFileProvider, option_problems
from stream.pipeline.kafka_clients import (
    connection_options,
    make_consumer,
    make_producer,
)
from stream.settings import load_settings


def test_every_unknown_or_owned_key_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            consumer_options={"sesion_timeout_ms": 10_000, "enable_auto_commit": True, "client_rack": "a"},
            producer_options={"linger": 5, "acks": 1, "compression_type": "gzip"},
        )
    message = str(caught.value)
    assert "consumer_options: 'sesion_timeout_ms' is not an aiokafka consumer parameter" in message
    assert "(did you mean 'session_timeout_ms'?)" in message
    assert "consumer_options: 'enable_auto_commit' is set by adaptlog" in message
    assert "producer_options: 'linger' is not an aiokafka producer parameter (did you mean 'linger_ms'?)" in message
    assert "producer_options: 'acks' is set by adaptlog" in message
    assert "client_rack" not in message and "compression_type" not in message  # the good ones pass


def test_a_producer_only_key_is_refused_for_consumers() -> None:
    assert option_problems("consumer", {"linger_ms": 5}) == ["'linger_ms' is not an aiokafka consumer parameter"]
    assert option_problems("producer", {"linger_ms": 5}) == []


def test_good_options_reach_the_clients_over_adaptlogs_defaults_but_not_over_the_callers() -> None:
    settings = load_settings(
        bootstrap_servers="127.0.0.1:9",
        consumer_options={"session_timeout_ms": 45_000, "max_poll_records": 7},
        producer_options={"request_timeout_ms": 12_345},
    )

    async def built() -> tuple[int, int, int]:
        consumer = make_consumer(settings, group_id="g", max_poll_records=3)
        producer = make_producer(settings)
        try:
            # aiokafka keeps its arguments privately; reading them is the only way to see what it was given
            return consumer._session_timeout_ms, consumer._max_poll_records, producer._request_timeout_ms
        finally:
            await producer.stop()

    session_timeout_ms, max_poll_records, request_timeout_ms = asyncio.run(built())
    assert session_timeout_ms == 45_000
    assert max_poll_records == 3  # what the stage builds the consumer for wins over the operator's default
    assert request_timeout_ms == 12_345


def test_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    provider = TokenFileProvider(path)
    assert asyncio.run(provider.token()) == "first-token"
    path.write_text("second-token-longer\n")
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))  # a rotation a second later, whatever the file system's time resolution
    assert asyncio.run(provider.token()) == "second-token-longer"
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        provider.read()


def test_oauthbearer_needs_a_token_file_and_builds_clients_aiokafka_accepts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sasl_oauth_token_file"):
        load_settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER", sasl_oauth_token_file=tmp_path / "none"
        )
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGFwdGxvZyJ9.")
    settings = load_settings(
        bootstrap_servers="127.0.0.1:9",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_file=token,
    )
    options = connection_options(settings)
    assert isinstance(options["sasl_oauth_token_provider"], TokenFileProvider)
    assert "sasl_plain_username" not in options

    async def built() -> None:
        # aiokafka refuses OAUTHBEARER without an AbstractTokenProvider at construction (ValueError)
        AIOKafkaConsumer(**options)

    asyncio.run(built())
