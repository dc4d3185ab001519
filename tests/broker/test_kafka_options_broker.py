"""Kafka client properties on real brokers: an operator's producer option changes what the real producer does, and SASL
OAUTHBEARER authenticates with the token file against Apache Kafka (and an expired token gets no connection)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from harness.broker.apache_kafka import start_apache_kafka
from harness.broker.running import BrokerUnavailable
from harness.broker.selection import REQUIRE_APACHE_ENV
from harness.required import missing
from harness.streaming import settings_for
from stream.pipeline.kafka_clients import (
    assign_from_beginning,
    ensure_topics,
    make_consumer,
    make_producer,
    new_topic,
)
from stream.settings import load_settings


@pytest.mark.broker
def test_producer_options_change_what_the_real_producer_does(kafka_broker, topic_prefix: str) -> None:
    """max_request_size is one of adaptlog's own defaults (64 MiB); the operator's value wins, and the real producer
    refuses a record over it."""
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, producer_options={"max_request_size": 2048})
    topic = f"{topic_prefix}-options"

    async def send() -> None:
        await ensure_topics(settings, [new_topic(settings, topic)])
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"x" * 100)  # under the limit: delivered
            with pytest.raises(MessageSizeTooLargeError):
                await producer.send_and_wait(topic, b"x" * 4096)
        finally:
            await producer.stop()

    asyncio.run(send())


def unsecured_jws(subject: str, lifetime_s: int = 3600) -> str:
    """An unsigned token Kafka's unsecured OAUTHBEARER validator accepts: header alg none, sub and exp claims."""

    def part(claims: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + lifetime_s})}."


@pytest.mark.broker
@pytest.mark.slow
def test_oauthbearer_authenticates_with_the_token_file_against_a_real_broker(tmp_path: Path) -> None:
    """Its own Apache Kafka with a SASL/OAUTHBEARER listener (Kafka's unsecured JWS validator): topics are created
    and a record goes through on the token read from the file; with an expired token in the file, no connection."""
    try:
        broker = start_apache_kafka(oauthbearer=True)
    except BrokerUnavailable as exc:
        missing("Apache Kafka with an OAUTHBEARER listener", REQUIRE_APACHE_ENV, str(exc))
    token = tmp_path / "token"
    token.write_text(unsecured_jws("adaptlog"))
    settings = load_settings(
        bootstrap_servers=broker.oauthbearer_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_file=token,
    )
    topic = "oauth-test"

    async def round_trip() -> bytes:
        await ensure_topics(settings, [new_topic(settings, topic)])
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"authenticated")
        finally:
            await producer.stop()
        consumer = make_consumer(settings, group_id=None)
        await consumer.start()
        try:
            await assign_from_beginning(consumer, topic)
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
            return record.value
        finally:
            await consumer.stop()

    try:
        assert asyncio.run(round_trip()) == b"authenticated"
        token.write_text(unsecured_jws("adaptlog", lifetime_s=-60))  # expired a minute ago: refused

        async def refused() -> None:
            producer = make_producer(settings)
            try:  # aiokafka keeps retrying a refused authentication: no connection within the wait is the refusal
                await asyncio.wait_for(producer.start(), timeout=15)
            finally:
                await producer.stop()

        with pytest.raises(TimeoutError):
            asyncio.run(refused())
    finally:
        broker.stop()
