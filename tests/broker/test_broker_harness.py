"""The broker harness itself: whatever broker the session got, a record round-trips and topics can be made."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from harness.broker.running import RunningBroker
from stream.pipeline.topics import create_topics

pytestmark = pytest.mark.broker

_TIMEOUT_S = 30.0


def test_record_round_trip(kafka_broker: RunningBroker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}-roundtrip"

    async def scenario() -> tuple[bytes | None, bytes | None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_broker.bootstrap,
            # Idempotent where the broker can do it (Apache Kafka), as the product runs; Tansu cannot.
            enable_idempotence=kafka_broker.supports_idempotence,
            compression_type="gzip",
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"line 1", key=b"host-a")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=f"{topic_prefix}-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            record = await consumer.getone()
            await consumer.commit()
        finally:
            await consumer.stop()
        return record.key, record.value

    key, value = asyncio.run(asyncio.wait_for(scenario(), _TIMEOUT_S))
    assert (key, value) == (b"host-a", b"line 1")


def test_create_compacted_topic(kafka_broker: RunningBroker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}-state"

    async def scenario() -> list[dict[str, object]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            await create_topics(
                admin,
                [NewTopic(topic, num_partitions=3, replication_factor=1, topic_configs={"cleanup.policy": "compact"})],
            )
            assert topic in await admin.list_topics()
            return await admin.describe_topics([topic])
        finally:
            await admin.close()

    (described,) = asyncio.run(asyncio.wait_for(scenario(), _TIMEOUT_S))
    assert described["error_code"] == 0
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]
