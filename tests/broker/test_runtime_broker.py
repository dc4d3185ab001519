"""The runtime's commits and deliveries on a real broker: a commit lands, one for a partition the group did not give
this member or one past its timeout is skipped (not raised), a group-less commit is a bug, and a record the broker
refuses stops the loop before it commits."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalOperation

from harness.streaming import settings_for
from stream.errors import BrokerError
from stream.pipeline.kafka_clients import ensure_topics, make_consumer, make_producer, new_topic
from stream.records import Outgoing
from stream.runtime.commit import commit_offsets, offsets_after
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.runtime import Runtime

pytestmark = pytest.mark.broker


def test_commits_land_and_refused_or_late_ones_are_skipped(kafka_broker, topic_prefix: str) -> None:
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, idempotent=kafka_broker.supports_idempotence)
    topic = settings.topics.windows

    async def scenario() -> None:
        await ensure_topics(settings, [new_topic(settings, topic)])
        producer = make_producer(settings)
        await producer.start()
        consumer = make_consumer(settings, topic, group_id=f"{topic_prefix}-group")
        await consumer.start()
        runtime = Runtime(DeadLetters("test", settings.topics.deadletter), producer)
        try:
            await runtime.publish([Outgoing(topic, b"%d" % i, partition=0) for i in range(3)])
            fetched: list = []
            while len(fetched) < 3:
                fetched += [r for rs in (await consumer.getmany(timeout_ms=1000)).values() for r in rs]
            assert await runtime.commit(consumer, offsets_after(fetched))
            assert await consumer.committed(TopicPartition(topic, 0)) == 3

            # a partition this member was not given (the group moved it): skipped, the next owner replays it
            elsewhere = TopicPartition(settings.topics.alerts, 0)
            assert not await runtime.commit(consumer, {elsewhere: 1})
            # a commit that outlasts its timeout (racing a rebalance): skipped, nothing held
            late = Runtime(DeadLetters("test", settings.topics.deadletter), producer, commit_timeout_s=0.0)
            assert not await late.commit(consumer, offsets_after(fetched))
            assert (runtime.commits_skipped, late.commits_skipped) == (1, 1)
            assert await consumer.committed(TopicPartition(topic, 0)) == 3
            assert await runtime.commit(consumer, {})  # nothing to commit
        finally:
            await consumer.stop()

        groupless = make_consumer(settings, topic, group_id=None)
        await groupless.start()
        try:
            with pytest.raises(IllegalOperation):  # a bug, not a rebalance: raised
                await commit_offsets(groupless, {TopicPartition(topic, 0): 1}, "test")
        finally:
            await groupless.stop()
            await producer.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_a_record_the_broker_refuses_stops_the_loop_before_it_commits(kafka_broker, topic_prefix: str) -> None:
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, idempotent=kafka_broker.supports_idempotence)
    small = f"{topic_prefix}-small"

    async def scenario() -> None:
        await ensure_topics(settings, [new_topic(settings, small, {"max.message.bytes": "1024"})])
        producer = make_producer(settings)
        await producer.start()
        try:
            runtime = Runtime(DeadLetters("test", settings.topics.deadletter), producer)
            with pytest.raises(BrokerError, match="not delivered, offsets stay uncommitted"):
                await runtime.publish([Outgoing(small, b"x" * 10), Outgoing(small, b"x" * 4096)])
            # sent without waiting (the stream stages): the refusal is raised at the confirm before a checkpoint
            stages = Runtime(DeadLetters("stage", settings.topics.deadletter), producer)
            await stages.send(Outgoing(small, b"x" * 4096))
            assert stages.deliveries.unflushed
            with pytest.raises(BrokerError, match="stage: a record was not delivered"):
                await stages.confirm()
            fine = Runtime(DeadLetters("fine", settings.topics.deadletter), producer)
            await fine.send(Outgoing(small, b"x" * 10))
            await fine.confirm()
            assert not fine.deliveries.unflushed
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))
