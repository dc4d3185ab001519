"""Client construction without a broker: partitioning identical to Kafka's default, and security options."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream.errors import ConfigError
from stream.pipeline.kafka_clients import CachedPartitioner, connection_options
from stream.settings import load_settings


def test_cached_partitioner_agrees_with_kafkas_default_also_after_eviction() -> None:
    cached = CachedPartitioner(max_keys=50)
    partitions = list(range(7))
    keys = [f"blk_{n}".encode() for n in range(-300, 300, 7)] + [b"hdfs", b"bgl", b"thunderbird"]
    for key in keys * 3:  # 3 passes over 89 keys with room for 50: hits, misses and evictions
        assert cached(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_sasl_scram_over_tls_options() -> None:
    settings = load_settings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="pw",
    )
    options = connection_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "svc" and options["sasl_plain_password"] == "pw"
    assert options["ssl_context"] is not None


def test_no_bootstrap_servers_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        connection_options(load_settings())


def test_every_topic_adaptlog_creates_takes_records_as_large_as_the_producer_sends() -> None:
    from stream.pipeline.kafka_clients import RECORD_MAX_BYTES, all_topic_specs

    settings = load_settings(bootstrap_servers="kafka:9092")
    assert {spec.topic_configs["max.message.bytes"] for spec in all_topic_specs(settings)} == {str(RECORD_MAX_BYTES)}


@pytest.mark.broker
def test_records_over_a_mib_round_trip_through_the_internal_topics(kafka_broker, topic_prefix: str) -> None:
    """A window of 20 lines of 64 KiB is ~7 MB: the broker's default 1 MiB refused it and the stage crash-looped."""
    import asyncio

    from harness.streaming import settings_for
    from stream.pipeline.kafka_clients import ensure_topics, make_producer, records_to_end, topic_specs

    settings = settings_for(kafka_broker.bootstrap, topic_prefix, idempotent=kafka_broker.supports_idempotence)
    topics = [settings.topics.lines, settings.topics.sessions, settings.topics.windows, settings.topics.deadletter]
    value = b"x" * (3 * 1024 * 1024)

    async def scenario() -> dict[str, list[int]]:
        await ensure_topics(settings, topic_specs(settings))
        producer = make_producer(settings)
        await producer.start()
        try:
            for topic in topics:
                await producer.send_and_wait(topic, value, partition=0)
        finally:
            await producer.stop()
        return {topic: [len(r.value) async for r in records_to_end(settings, topic, [0])] for topic in topics}

    received = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert received == {topic: [len(value)] for topic in topics}
