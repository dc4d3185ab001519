"""Checkpoints of a stage partition: its state and the input offset it covers, in one compacted-topic record.

Storing the offset *inside* the state record (rather than relying on the consumer group's committed offset) makes
state and position atomic: after a crash a stage restores the last checkpoint and seeks its input to the offset stored
with it, so it replays exactly the records the state has not seen. Because stages are deterministic (wall-clock
progress enters as tick records in the input itself), the replay re-emits identical outputs with identical ids.

The record for input partition ``p`` of a stage goes to partition ``p mod n`` of the state topic under the key
``stage/topic/p``, so a stage restoring one partition reads one state partition, not the whole topic.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.errors import StateError
from stream.pipeline.kafka_clients import records_to_end
from stream.settings import Settings

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int  # the next input offset to process
    state: dict[str, Any]


def checkpoint_key(stage: str, topic: str, partition: int) -> bytes:
    return f"{stage}/{topic}/{partition}".encode()


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    body = orjson.dumps({"version": FORMAT_VERSION, "offset": checkpoint.offset, "state": checkpoint.state})
    return zlib.compress(body, 1)  # fast level: window state is repetitive text and compresses ~10x even so


def decode_checkpoint(data: bytes) -> Checkpoint:
    try:
        document = orjson.loads(zlib.decompress(data))
        if document.get("version") != FORMAT_VERSION:
            raise StateError(f"checkpoint format {document.get('version')!r}, this build reads {FORMAT_VERSION}")
        return Checkpoint(offset=int(document["offset"]), state=document["state"])
    except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"checkpoint record is malformed: {exc}") from exc


class CheckpointStore:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        self._topic = settings.topics.state

    def _state_partition(self, partition: int) -> int:
        return partition % self._settings.internal_partitions

    async def save(self, stage: str, topic: str, partition: int, checkpoint: Checkpoint) -> int:
        """Write the checkpoint; returns its size in bytes as stored (compressed)."""
        value = encode_checkpoint(checkpoint)
        await self._producer.send_and_wait(
            self._topic,
            value,
            key=checkpoint_key(stage, topic, partition),
            partition=self._state_partition(partition),
        )
        return len(value)

    async def load(self, stage: str, topic: str, partitions: list[int]) -> dict[int, Checkpoint]:
        """The latest checkpoint of each given input partition (absent when the stage never checkpointed it)."""
        wanted = {checkpoint_key(stage, topic, p): p for p in partitions}
        state_partitions = {self._state_partition(p) for p in partitions}
        latest: dict[int, bytes] = {}
        async for record in records_to_end(self._settings, self._topic, state_partitions):
            if record.key in wanted:
                if record.value is None:
                    latest.pop(wanted[record.key], None)  # a tombstone deletes the checkpoint
                else:
                    latest[wanted[record.key]] = record.value
        return {partition: decode_checkpoint(value) for partition, value in latest.items()}
