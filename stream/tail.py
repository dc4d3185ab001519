"""Print the records of a topic as JSON lines (all partitions, from the beginning), for people and scripts."""

from __future__ import annotations

import base64
import sys
import time
from typing import Any, TextIO

import orjson

from stream.pipeline.kafka_clients import assign_from_beginning, make_consumer, records_to_end
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


async def read_records(settings: Settings, topic: str) -> list[Any]:
    """Every record now in ``topic`` (up to its current end offsets), in partition then offset order."""
    return [record async for record in records_to_end(settings, topic)]


async def read_json_records(settings: Settings, topic: str) -> list[Any]:
    """The JSON values of every record now in ``topic``."""
    return [orjson.loads(r.value) for r in await read_records(settings, topic) if r.value is not None]
