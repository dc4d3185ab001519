"""Decide that a broker is usable by using it: create a topic, produce, consume in a group, commit.

A Kafka broker answers metadata requests before its group coordinator has loaded ``__consumer_offsets``;
a test that starts in that gap sees GroupCoordinatorNotAvailable and flakes. So readiness is the full
round trip a real test does, retried until it passes or the deadline runs out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from stream.pipeline.topics import create_topics

T = TypeVar("T")

_RETRY_PAUSE_S = 0.25


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when the caller is itself inside an event loop.

    Session fixtures are sync, but pytest-asyncio (or anything else) may already run a loop in this
    thread; a private thread with its own loop works in both cases.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-readiness") as pool:
        return pool.submit(asyncio.run, coro).result()


async def round_trip(bootstrap: str, *, idempotent: bool, timeout: float, group: bool = True) -> None:
    """Return once one full round trip succeeds; raise TimeoutError with the last failure otherwise.

    ``group=False`` reads back without a consumer group: for brokers that have no coordinator warm-up gap
    but do make every new group wait (Tansu holds a first JoinGroup for ~5 s).
    """
    deadline = time.monotonic() + timeout
    topic = f"__adaptlog-readiness-{uuid.uuid4().hex[:12]}"
    last: BaseException | None = None
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                await _attempt(bootstrap, topic, idempotent=idempotent, group=group)
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(_RETRY_PAUSE_S)
    raise TimeoutError(f"broker at {bootstrap} not usable within {timeout:.0f}s; last error: {last!r}")


async def reachable(bootstrap: str, *, timeout: float) -> None:
    """Lighter check for brokers we did not start (external): metadata only, no topics left behind."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    async with asyncio.timeout(timeout):
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()


async def _attempt(bootstrap: str, topic: str, *, idempotent: bool, group: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Already there is fine: an earlier attempt may have got this far.
        await create_topics(admin, [NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=idempotent)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"ready")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        *([topic] if group else []),
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group" if group else None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        if not group:
            consumer.assign([TopicPartition(topic, 0)])
        await consumer.getone()
        if group:
            await consumer.commit()  # proves the group coordinator answers, which is what flakes when early
    finally:
        await consumer.stop()
