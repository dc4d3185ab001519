"""Checkpoints of a stage partition: its state and the input offset it covers, as a changelog on a compacted topic.

Storing the offset *with* the state (rather than relying on the consumer group's committed offset) makes state and
position atomic: after a crash a stage restores the last checkpoint and seeks its input to the offset stored with
it, so it replays exactly the records the state has not seen. Because stages are deterministic (wall-clock progress
enters as tick records in the input itself), the replay re-emits identical outputs with identical ids.

Incremental. A partition's state is a small *head* (dedup positions, window watermarks and policies; the parse
stage's miners and count/event-time windows, which are bounded by a window's size and the template count) and many
*entries* (the session stage's open sessions: all 11,501 HDFS blocks at once during a backlog, 58 MB of JSON).
A checkpoint writes the head whole and only the entries that changed since the last one, each under its own key,
in the manner of a Kafka Streams state store's changelog (``changelog.py`` has the records).

Atomic by an epoch scheme with the head written last, not by Kafka transactions. Each checkpoint has an epoch;
its entries carry it in their keys and are acknowledged before the head naming that epoch and the offset is sent.
A reader takes each entry's newest version at or below the head's epoch, so a crash anywhere before the head is
acknowledged restores the previous checkpoint whole, with its offset; one after it, the new one. Versions are never
overwritten in place (the epoch is in the key), so compaction cannot remove a committed version in favour of an
uncommitted one; superseded versions are tombstoned once the head that supersedes them is written. Why not
transactions (a transactional producer, a read_committed restore):

* the demo and the test fallback run on Tansu, which refuses transactional (and idempotent) producers; the epoch
  scheme needs nothing but ordered, acknowledged writes to one partition, which every broker gives;
* the state topic's partitions are shared (``p mod n``, and by the parse and session stages), so a transaction
  left open by a crashed worker holds the last stable offset of the partition until the coordinator times it out,
  and a read_committed restore of every *other* partition there would read a stale prefix meanwhile; avoiding that
  takes a transactional producer per input partition (fencing) and waiting for the LSO on every restore;
* a transaction per checkpoint adds two coordinator round trips and the markers, for an atomicity the head record
  already gives.

What transactions would add, and this does not: fencing a *zombie* worker (one that lost its partitions without
noticing) out of the state topic. That was not fenced before either; see docs/stream-results.md.

Format-1 checkpoints (the whole state in one record under the head's key, before 2026-12) are read as epoch 0 and
restored whole; the stage's first checkpoint after that writes every entry and a format-2 head over the old record.

The records of input partition ``p`` of a stage go to partition ``p mod n`` of the state topic, so a stage
restoring one partition reads one state partition, not the whole topic.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from stream.errors import StateError
from stream.pipeline.changelog import (
    ChangelogReader,
    Checkpoint,
    PartitionChangelog,
    Record,
    StateChanges,
    changelog_name,
    name_of_key,
)
from stream.pipeline.kafka_clients import records_to_end
from stream.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Checkpoint", "CheckpointStore", "StateChanges"]


class CheckpointStore:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        self._topic = settings.topics.state
        self._changelogs: dict[str, PartitionChangelog] = {}  # the partitions this worker loaded and owns
        self._broken: set[str] = set()  # a save failed part-way: its changelog knowledge may be wrong

    def _state_partition(self, partition: int) -> int:
        return partition % self._settings.internal_partitions

    async def save(self, stage: str, topic: str, partition: int, offset: int, changes: StateChanges) -> int:
        """Write a checkpoint of the partition (``offset``: the next input offset); returns the bytes written.

        The partition must have been loaded first (its changelog's epochs and left-overs are learnt there)."""
        name = changelog_name(stage, topic, partition)
        changelog = self._changelogs.get(name)
        if changelog is None:
            raise StateError(f"{name}: checkpoint saved before it was loaded")
        if name in self._broken:
            # The processor handed over its changes to a save that failed: what the next one would write misses them.
            raise StateError(f"{name}: an earlier checkpoint failed part-way; restart to restore from the last one")
        plan = changelog.plan(offset, changes)
        state_partition = self._state_partition(partition)
        self._broken.add(name)
        await self._send_acknowledged(plan.before_head, state_partition)
        await self._send_acknowledged([plan.head], state_partition)  # the commit point
        await self._send_acknowledged(plan.after_head, state_partition)
        changelog.commit(plan)
        self._broken.discard(name)
        return plan.size

    async def _send_acknowledged(self, records: list[Record], partition: int) -> None:
        deliveries = [
            await self._producer.send(self._topic, value, key=key, partition=partition) for key, value in records
        ]
        await asyncio.gather(*deliveries)  # raises the first record the broker refused after retries

    async def load(self, stage: str, topic: str, partitions: list[int]) -> dict[int, Checkpoint]:
        """The latest checkpoint of each given input partition (absent when the stage never checkpointed it)."""
        names = {changelog_name(stage, topic, p): p for p in partitions}
        readers = {name: ChangelogReader(name) for name in names}
        state_partitions = {self._state_partition(p) for p in partitions}
        async for record in records_to_end(self._settings, self._topic, state_partitions):
            reader = readers.get(name_of_key(record.key)) if record.key is not None else None
            if reader is not None:
                reader.add(record.key, record.value)
        restored: dict[int, Checkpoint] = {}
        for name, reader in readers.items():
            checkpoint, changelog = reader.result()
            self._changelogs[name] = changelog
            self._broken.discard(name)
            if changelog.garbage:
                log.warning(
                    "%s: %d records of an interrupted checkpoint are ignored (restoring epoch %d); they are "
                    "deleted before the next one",
                    name,
                    len(changelog.garbage),
                    changelog.epoch,
                )
            if checkpoint is None:
                continue
            restored[names[name]] = checkpoint
            if checkpoint.entries is None:
                log.warning(
                    "%s: restoring a format-1 (whole-state) checkpoint at offset %d; the next checkpoint rewrites "
                    "it as a changelog",
                    name,
                    checkpoint.offset,
                )
        return restored

    def forget(self, stage: str, topic: str, partition: int) -> None:
        """The partition went to another worker: its changelog is theirs now."""
        name = changelog_name(stage, topic, partition)
        self._changelogs.pop(name, None)
        self._broken.discard(name)
