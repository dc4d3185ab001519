"""Print the records of a topic as JSON lines (all partitions, from the beginning), for people and scripts."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from typing import Any, TextIO

import orjson
from aiokafka import TopicPartition

from stream.pipeline.kafka_clients import make_consumer
from stream.settings import Settings


def render(record: Any) -> bytes:
    try:
        value: Any = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        try:
            value = record.value.decode("utf-8")
        except UnicodeDecodeError:
            value = {"base64": base64.b64encode(record.value).decode("ascii")}
    return orjson.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp,
            "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
            "headers": {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())},
            "value": value,
        }
    )


async def assign_from_beginning(consumer: Any, topic: str, timeout_s: float = 10.0) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to a group-less consumer, positioned at the beginning."""
    partitions = await _partitions(consumer, topic, timeout_s)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if tps:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    return tps


async def tail(
    settings: Settings, topic: str, max_records: int | None, timeout_s: float, out: TextIO = sys.stdout
) -> int:
    """Print records until ``max_records`` are printed or none arrived for ``timeout_s``. Returns the count."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    printed = 0
    try:
        if not await assign_from_beginning(consumer, topic, timeout_s):
            return 0
        quiet_since = time.monotonic()
        while max_records is None or printed < max_records:
            batch = await consumer.getmany(timeout_ms=200)
            records = sorted((r for rs in batch.values() for r in rs), key=lambda r: (r.timestamp, r.partition))
            if records:
                quiet_since = time.monotonic()
            for record in records:
                out.write(render(record).decode() + "\n")
                printed += 1
                if max_records is not None and printed >= max_records:
                    break
            out.flush()
            if time.monotonic() - quiet_since >= timeout_s:
                break
    finally:
        await consumer.stop()
    return printed


async def _partitions(consumer: Any, topic: str, timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() >= deadline:
            return set()
        await asyncio.sleep(0.2)


async def read_records(settings: Settings, topic: str) -> list[Any]:
    """Every record now in ``topic`` (up to its current end offsets), in partition then offset order."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    out: list[Any] = []
    try:
        tps = await assign_from_beginning(consumer, topic, timeout_s=5.0)
        if not tps:
            return out
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for records in batch.values():
                out.extend(records)
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()
    return out


async def read_json_records(settings: Settings, topic: str) -> list[Any]:
    """The JSON values of every record now in ``topic``."""
    return [orjson.loads(r.value) for r in await read_records(settings, topic) if r.value is not None]
