"""Client construction without a broker: partitioning identical to Kafka's default, and security options. Records
over a MiB on a broker: tests/broker/test_kafka_clients_broker.py."""

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
