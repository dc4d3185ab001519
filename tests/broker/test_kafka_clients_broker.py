"""Client construction on a broker: records over a MiB round-trip through the internal topics."""

from __future__ import annotations

import pytest


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
