"""Run one stage on Kafka: consume its input topics in a consumer group, feed each partition's processor, produce
what it returns, write ticks, and checkpoint.

Delivery is at-least-once with deterministic replay:

1. outputs of processed records are produced (not yet awaited);
2. every ``checkpoint_interval_ms`` (and when partitions are revoked, and at shutdown) the producer is flushed, each
   changed partition's state is saved together with its next input offset (``checkpoint.py``), and then the group
   offsets are committed (for lag monitoring; the checkpoint's offset is the one a restart seeks to);
3. on assignment a partition's checkpoint is restored and its input sought to the offset stored with it.

A crash between 1 and 2 replays the records since the last checkpoint from restored state, re-producing identical
records (same window ids), which downstream stages drop by upstream position (``UpstreamDedup``).

The loop itself is the runtime's driver (``stream.runtime.loop.ConsumeLoop``, ``Commit.AT_CHECKPOINT``): it polls,
sends, and on each checkpoint confirms the deliveries, calls ``before_commit`` (the state saved with its offsets) and
commits within the runtime's timeout, all under the lock its rebalance listener takes too.

Wall-clock progress enters as *tick records* the runner writes into its own input partitions while a processor has
open state with an idle timeout. The tick's broker timestamp is its time, so a replay sees exactly the ticks the first
run saw, at the same positions, and closes the same windows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.pipeline.checkpoint import Checkpoint, CheckpointStore
from stream.pipeline.kafka_clients import make_consumer
from stream.pipeline.stage import InputRecord, PartitionProcessor, SystemStats, state_changes
from stream.records import TICK, Outgoing, encode
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.loop import Commit, ConsumeLoop, Fetched, LoopHooks, Step
from stream.runtime.runtime import Runtime
from stream.settings import Settings

# A checkpoint encodes the sessions that changed (during a backlog of HDFS blocks, thousands) and the rest of a
# partition's state whole. The next one waits at least this many times as long as the last took, so checkpointing
# stays under ~1/10 of a stage's time however large the state grows (Flink's "minimum pause between checkpoints").
# The interval setting is the floor; a crash replays at most one pause's worth of input, from the last checkpoint.
CHECKPOINT_PAUSE_FACTOR = 10

log = logging.getLogger(__name__)

# A processor for an assigned partition, from its restored checkpoint (None: it has none).
ProcessorFactory = Callable[[TopicPartition, Checkpoint | None], PartitionProcessor]


class StageRunner(LoopHooks):
    """One stage on the runtime's loop driver (``stream.runtime.loop``, ``Commit.AT_CHECKPOINT``): the driver polls,
    sends what the partitions' processors return, and commits; this class restores and checkpoints state, writes
    ticks and says when to checkpoint."""

    def __init__(
        self,
        stage: str,
        settings: Settings,
        topics: tuple[str, ...],
        factory: ProcessorFactory,
        producer: AIOKafkaProducer,
        checkpoints: CheckpointStore,
        *,
        stateful: bool,
    ) -> None:
        self.stage = stage
        self._settings = settings
        self._topics = topics
        self._factory = factory
        self._runtime = Runtime(DeadLetters(stage, settings.topics.deadletter), producer)
        self._checkpoints = checkpoints
        self._stateful = stateful
        self._processors: dict[TopicPartition, PartitionProcessor] = {}
        self._positions: dict[TopicPartition, int] = {}
        # aiokafka logs and swallows what the rebalance listener raises: a failed restore would leave the partition
        # unprocessed without a word, so it is kept here and raised by the loop
        self._restore_error: BaseException | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: ConsumeLoop | None = None
        self._last_tick = self._last_checkpoint = 0.0
        self._interval_s = self._pause_s = settings.checkpoint_interval_ms / 1000
        self.counts: Counter[str] = Counter()
        self.dead_letters: Counter[tuple[str, str]] = Counter()  # (stage, reason category) -> dead letters sent
        self.checkpoint_bytes = 0  # encoded state written, all checkpoints together
        self.checkpoint_seconds = 0.0  # time spent checkpointing (flush, state, commit), all together
        self.last_checkpoint_bytes = 0  # the state written by the last checkpoint that wrote any
        self.assigned = False  # the group has given this stage its partitions (possibly none) at least once

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(
            self._settings,
            group_id=f"{self._settings.group_prefix}-{self.stage}",
            max_poll_records=self._settings.batch_max_records,
        )
        self._consumer = consumer
        loop = self._loop = ConsumeLoop(
            consumer,
            self._runtime,
            self,
            commit=Commit.AT_CHECKPOINT,
            poll_ms=200,
            max_records=self._settings.batch_max_records,
        )
        await consumer.start()
        consumer.subscribe(list(self._topics), listener=loop.listener())
        self._last_tick = self._last_checkpoint = time.monotonic()
        try:
            await loop.run(stop)  # its last act: the final checkpoint
        finally:
            await consumer.stop()

    # ------------------------------------------------------------------------------------- the driver's hooks

    async def before_batch(self) -> None:
        if self._restore_error is not None:
            raise self._restore_error

    async def process(self, fetched: Fetched) -> Step:
        step = Step()
        for tp, records in fetched.items():
            processor = self._processors.get(tp)
            if processor is None or not records:
                continue  # revoked while the batch was in flight: the new owner replays it from the checkpoint
            batch = [
                InputRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, tuple(r.headers or ()))
                for r in records
            ]
            self.counts["records_in"] += len(batch)
            for out in processor.process_batch(batch):
                step.outgoing.append(self._counted(out))
            self._positions[tp] = step.offsets[tp] = records[-1].offset + 1
        return step

    async def tick(self) -> None:
        now = time.monotonic()
        if (now - self._last_tick) * 1000 >= self._settings.tick_interval_ms:
            await self._write_ticks()
            self._last_tick = now
        if now - self._last_checkpoint >= self._pause_s and self._loop is not None:
            await self._loop.commit()
            self._last_checkpoint = time.monotonic()
            self._pause_s = max(self._interval_s, CHECKPOINT_PAUSE_FACTOR * (self._last_checkpoint - now))

    async def before_commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Save each changed partition's state with the offset it reached (the offset a restart seeks to)."""
        if not self._stateful:
            return
        written = 0
        for tp, offset in offsets.items():
            changes = state_changes(self._processors[tp]) if tp in self._processors else None
            if changes is not None:
                written += await self._checkpoints.save(self.stage, tp.topic, tp.partition, offset, changes)
        if written:
            self.checkpoint_bytes += written
            self.last_checkpoint_bytes = written

    async def after_commit(self, offsets: dict[TopicPartition, int], committed: bool, seconds: float) -> None:
        # a commit the group refused after a rebalance was skipped: the checkpoint already holds the position
        self.counts["checkpoints"] += 1
        self.checkpoint_seconds += seconds

    async def on_revoke(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            if tp in self._processors:
                self._processors.pop(tp, None)
                self._positions.pop(tp, None)
                self._checkpoints.forget(self.stage, tp.topic, tp.partition)

    async def on_assign(self, assigned: set[TopicPartition]) -> None:
        self.assigned = True
        try:
            await self._restore(assigned)
        except Exception as exc:
            # e.g. a checkpoint that does not read back: crash loudly rather than run without it (deleting the
            # partition's records from the state topic starts it afresh, losing its open windows)
            log.exception("%s: restoring %s failed", self.stage, sorted(map(str, assigned)))
            self._restore_error = exc

    # ------------------------------------------------------------------------------------------------- the rest

    def _counted(self, out: Outgoing) -> Outgoing:
        self.counts[f"out:{out.topic}"] += 1
        if out.dead is not None:
            self.dead_letters[out.dead] += 1
        return out

    async def _write_ticks(self) -> None:
        tick = encode(TICK)
        for tp, processor in self._processors.items():
            # Only a caught-up partition ticks: while a backlog is replayed (after an outage) its lines would
            # otherwise look idle and their sessions would close early.
            if processor.wants_ticks() and self._caught_up(tp):
                await self._runtime.send(self._counted(Outgoing(tp.topic, tick, partition=tp.partition)))

    def _caught_up(self, tp: TopicPartition) -> bool:
        highwater = self._consumer.highwater(tp) if self._consumer is not None else None
        return highwater is not None and self._positions.get(tp, 0) >= highwater

    # Read by the metrics collector on the HTTP thread at scrape time: each copies what it iterates first (list()
    # of a dict runs in C under the GIL), so a rebalance on the loop thread never changes a dict under it.

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records behind the partition's end) of each assigned partition with both known."""
        consumer = self._consumer
        if consumer is None:
            return []
        out = []
        for tp, position in list(self._positions.items()):
            try:
                highwater = consumer.highwater(tp)
            except (AssertionError, AttributeError):  # revoked meanwhile (aiokafka asserts it is assigned)
                continue
            if highwater is not None:
                out.append((tp.topic, tp.partition, max(0, highwater - position)))
        return out

    def system_stats(self) -> list[SystemStats]:
        """What each partition's processor holds per system (open windows, templates, latest event time)."""
        return [stats for processor in list(self._processors.values()) for stats in processor.system_stats()]

    async def _restore(self, assigned: set[TopicPartition]) -> None:
        restored: dict[TopicPartition, Checkpoint] = {}
        if self._stateful:
            for topic in {tp.topic for tp in assigned}:
                partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
                found = await self._checkpoints.load(self.stage, topic, partitions)
                restored |= {TopicPartition(topic, p): cp for p, cp in found.items()}
        for tp in assigned:
            checkpoint = restored.get(tp)
            self._processors[tp] = self._factory(tp, checkpoint)
            if checkpoint is not None and self._consumer is not None:
                self._consumer.seek(tp, checkpoint.offset)
                self._positions[tp] = checkpoint.offset
        log.info(
            "%s: assigned %s (%d restored from checkpoints)",
            self.stage,
            sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned),
            len(restored),
        )
