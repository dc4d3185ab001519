"""The one consume loop driver: poll -> process -> produce -> commit, with the lock that keeps a rebalance from
interleaving with a batch, for every loop whose shape it fits.

A loop gives :class:`ConsumeLoop` its hooks (:class:`LoopHooks`: what to make of a batch, what to do after each
poll, what to store before a commit, what to do when partitions come and go) and one of two commit modes, the two
ways of :class:`stream.runtime.delivery.Deliveries`:

* ``Commit.EACH_BATCH``: a batch's records are published and every acknowledgement awaited, then its offsets are
  committed (the feedback service, the notifier). Nothing is committed past a record the broker has not taken.
* ``Commit.AT_CHECKPOINT``: a batch's records are sent without waiting; the loop commits when it chooses
  (``commit()`` from its ``tick``: the stream stages' checkpoint interval), when partitions are revoked (those
  partitions only) and when it stops. Each commit confirms every delivery first (a refused record raises
  BrokerError before anything is committed), then ``before_commit`` (the stages' state checkpoint, stored with the
  offsets it covers), then commits within the runtime's timeout (``commit.commit_offsets``: refused or late
  commits skipped, the checkpoint holds the position).

The driver owns the offsets a loop may commit (``pending``: what each processed batch said it consumed, recorded
only once its records are delivered or sent), so no loop can commit past a record it has not produced for.

Rebalance safety: each poll's batch, its ``tick`` and each commit run under ``lock``; the listener the driver gives
(``listener()``, for loops that subscribe with one) takes the same lock, commits the revoked partitions' pending
offsets, and then calls ``on_revoke`` / ``on_assign``. A loop whose consumer subscribes without a listener (the
feedback service, the notifier) commits after every batch and keeps aiokafka's default rebalance: the driver adds
none, so a notifier retrying a receiver never holds a rebalance up.

Pipelined (``pipeline=Pipeline(...)``, ``Commit.EACH_BATCH`` only; the inference worker): a fetch task gathers
micro-batches onto a bounded queue while the loop processes, publishes and commits the previous ones, so the model
scores one batch while the next is fetched. No lock is held across ``process`` (it may take seconds on a model):
the listener (``listener()``, a ``pipeline.Assignment``) instead waits for the one batch in flight to settle, at
most ``Pipeline.handover_wait_s``, and batches fetched under an earlier assignment are left uncommitted to the
partitions' new owners (``on_handed_over``). ``tick`` runs when no batch has come for ``Pipeline.tick_s``, never
while partitions are being revoked. See ``pipeline``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from stream.errors import ConfigError, Stopped
from stream.records import Outgoing
from stream.runtime.commit import offsets_after
from stream.runtime.dead_letters import Position
from stream.runtime.pipeline import Assignment, Batch, Pipeline
from stream.runtime.runtime import Runtime

log = logging.getLogger(__name__)

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord]]


class Commit(enum.Enum):
    EACH_BATCH = "each-batch"  # publish a batch's records, await every ack, commit past the batch
    AT_CHECKPOINT = "at-checkpoint"  # send without waiting; confirm and commit when the loop says (and on revoke/stop)


class StopLoop(Stopped):
    """Raised by ``process`` to end the loop at once, the batch neither produced for nor committed (the notifier
    stopped while it waited to retry a receiver: the next run delivers the batch again)."""


@dataclass
class Step:
    """What a loop made of one batch: the records to produce, and the offsets it may commit once they are produced
    (each partition's next offset; a partition the loop did not process is left out)."""

    outgoing: list[Outgoing] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)

    @classmethod
    def past(cls, records: Iterable[Position], outgoing: Iterable[Outgoing] = ()) -> Step:
        """``outgoing``, committing past every one of ``records``."""
        return cls(list(outgoing), offsets_after(records))


class LoopHooks(ABC):
    """What a loop does at each point of the driver's cycle; every hook but ``process`` (which each loop must give)
    does nothing by default. Every hook but the listener's runs under the driver's lock."""

    async def before_batch(self) -> None:
        """After each poll, before its records (a loop that must stop on what a rebalance found raises here)."""
        return None

    @abstractmethod
    async def process(self, fetched: Fetched) -> Step:
        """The records to produce for a batch (called only when the poll fetched records)."""

    async def tick(self) -> None:
        """After each poll's batch is produced (and, each batch, committed), with records or without: timers. When
        pipelined: when no batch has come for ``Pipeline.tick_s``."""
        return None

    async def after_publish(self, fetched: Fetched) -> None:
        """``Commit.EACH_BATCH``: after a batch's records are acknowledged, before its offsets are committed."""
        return None

    async def before_commit(self, offsets: dict[TopicPartition, int]) -> None:
        """After the deliveries are confirmed, before ``offsets`` are committed (the stages' state checkpoint)."""
        return None

    async def after_commit(self, offsets: dict[TopicPartition, int], committed: bool, seconds: float) -> None:
        """After a commit: whether the group took it, and how long it took, confirmation included."""
        return None

    async def on_revoke(self, revoked: set[TopicPartition]) -> None:
        """Partitions taken away, after their pending offsets were committed."""
        return None

    async def on_assign(self, assigned: set[TopicPartition]) -> None:
        """Partitions given (restore state, seek)."""
        return None

    async def on_handed_over(self, records: Sequence[ConsumerRecord]) -> None:
        """Pipelined: records fetched under an earlier assignment, left unprocessed and uncommitted (their
        partitions' owners fetch them again from the committed offsets)."""
        return None


class ConsumeLoop:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        runtime: Runtime,
        hooks: LoopHooks,
        *,
        commit: Commit,
        poll_ms: int,
        max_records: int | None = None,
        pipeline: Pipeline | None = None,
        counts: Counter[str] | None = None,
    ) -> None:
        if pipeline is not None and commit is not Commit.EACH_BATCH:
            raise ConfigError("pipeline", "a pipelined loop commits each batch (Commit.EACH_BATCH)")
        self.consumer = consumer
        self.runtime = runtime
        self.hooks = hooks
        self.mode = commit
        self.poll_ms = poll_ms
        self.max_records = max_records
        self.pipeline = pipeline
        self.counts: Counter[str] = counts if counts is not None else Counter()  # hand-overs at revocations
        self.lock = asyncio.Lock()  # the rebalance listener runs in another task: never interleave with a batch
        self.pending: dict[TopicPartition, int] = {}  # processed and produced for, not yet committed
        # pipelined: the batches gathered ahead, the assignment they were fetched under, and the batch in flight
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=pipeline.depth if pipeline else 0)
        self.assignment = Assignment(self._settle, on_revoke=hooks.on_revoke, on_assign=hooks.on_assign)
        self._idle = asyncio.Event()  # set while no batch is between its ownership check and its commit
        self._idle.set()
        self._settled = True  # whether the last batch's offsets were committed (what a hand-over needs)

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to subscribe with: revoked partitions' offsets committed first, under the lock
        (pipelined: the batch in flight settled first, see ``pipeline.Assignment``)."""
        return self.assignment if self.pipeline is not None else _Listener(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` (or ``StopLoop``); at the end, commit what is pending (``AT_CHECKPOINT``)."""
        if self.pipeline is not None:
            await self._run_pipelined(self.pipeline, stop)
            return
        try:
            while not stop.is_set():
                fetched = await self.consumer.getmany(timeout_ms=self.poll_ms, max_records=self.max_records)
                async with self.lock:
                    await self.hooks.before_batch()
                    if any(fetched.values()):
                        try:
                            step = await self.hooks.process(fetched)
                        except StopLoop:
                            return
                        await self._produce(step, fetched)
                    await self.hooks.tick()
        finally:
            if self.mode is Commit.AT_CHECKPOINT:
                async with self.lock:
                    await self.commit()

    async def _produce(self, step: Step, fetched: Fetched) -> bool:
        """Produce a step's records; in ``EACH_BATCH`` mode, commit past it: whether that commit was taken."""
        if self.mode is Commit.EACH_BATCH:
            await self.runtime.publish(step.outgoing)  # BrokerError if one is refused: nothing committed
            await self.hooks.after_publish(fetched)
            self._record(step.offsets)
            return await self.commit()
        for out in step.outgoing:
            await self.runtime.send(out)
        self._record(step.offsets)
        return False

    def _record(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.pending[tp] = max(self.pending.get(tp, 0), offset)

    async def commit(self, only: set[TopicPartition] | None = None) -> bool:
        """Commit the pending offsets (of ``only``'s partitions, if given); call with the lock held (pipelined: from
        the process task, the only one that commits there). In
        ``AT_CHECKPOINT`` mode every delivery is confirmed first, and nothing at all happens when nothing is
        pending nor unconfirmed. Whether the group took the commit."""
        offsets = {tp: o for tp, o in self.pending.items() if only is None or tp in only}
        checkpointed = self.mode is Commit.AT_CHECKPOINT
        if not offsets and not (checkpointed and self.runtime.deliveries.unflushed):
            return True
        started = time.monotonic()
        if checkpointed:
            # A record the broker refused after the producer's retries raises here: committing now would skip it.
            await self.runtime.confirm()
        await self.hooks.before_commit(offsets)
        committed = await self.runtime.commit(self.consumer, offsets)
        for tp in offsets:
            self.pending.pop(tp, None)
        await self.hooks.after_commit(offsets, committed, time.monotonic() - started)
        return committed

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            await self.commit(revoked)
            await self.hooks.on_revoke(revoked)

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            await self.hooks.on_assign(assigned)

    # ------------------------------------------------------------------------------------------------ pipelined

    async def _run_pipelined(self, pipeline: Pipeline, stop: asyncio.Event) -> None:
        """The fetch task and the process task until ``stop``; when either fails, or ``process`` raises
        ``StopLoop``, the other is cancelled at once (what was not committed is fetched again after a restart)."""
        fetch = asyncio.create_task(self._gather(pipeline, stop), name=f"{self.runtime.stage}-fetch")
        work = asyncio.create_task(self._drain(pipeline), name=f"{self.runtime.stage}-process")
        try:
            done, _ = await asyncio.wait([fetch, work], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if work not in done:
                await work  # the fetch task stopped cleanly and handed over its last batch: process it
        finally:
            for task in (fetch, work):
                task.cancel()
            await asyncio.gather(fetch, work, return_exceptions=True)

    async def _gather(self, pipeline: Pipeline, stop: asyncio.Event) -> None:
        """Gather micro-batches until ``stop``; then hand over the last one and the end marker (None).

        Only a clean stop hands anything over. A cancellation (the process task failed, or the loop is shutting
        down) leaves at once: waiting to put on a full queue that no one reads any more would hang the loop, and
        the batches not processed were not committed, so they are fetched again after the restart.
        """
        batch = Batch()
        while not stop.is_set():
            wait_ms = pipeline.max_wait_ms
            if batch.size:
                wait_ms = max(1, int(wait_ms - batch.waited_ms()))
            room = pipeline.max_records - batch.size
            fetched = await self.consumer.getmany(timeout_ms=wait_ms, max_records=room)
            if batch.size and batch.generation != self.assignment.generation:
                await self._leave(batch)  # fetched under an earlier assignment: fetched again from the commit
                batch = Batch()
            batch.add(fetched, self.assignment.generation)
            if batch.size >= pipeline.max_records or (batch.size and batch.waited_ms() >= pipeline.max_wait_ms):
                await self.queue.put(batch)  # blocks while processing is behind: backpressure
                batch = Batch()
        if batch.size:
            await self.queue.put(batch)
        await self.queue.put(None)

    async def _drain(self, pipeline: Pipeline) -> None:
        """Process the gathered batches in order until the end marker; ``tick`` when none comes for a while."""
        while True:
            try:
                batch = await asyncio.wait_for(self.queue.get(), timeout=pipeline.tick_s)
            except TimeoutError:
                if not self.assignment.revoking:  # the partitions' next owner does what is due
                    await self.hooks.tick()
                continue
            if batch is None:
                return
            await self.hooks.before_batch()
            self._idle.clear()
            self._settled = False  # until its commit is taken: a batch that fails half way did not settle
            try:
                self._settled = await self._process_owned(batch)
            except StopLoop:
                return
            finally:
                self._idle.set()

    async def _process_owned(self, batch: Batch) -> bool:
        """Process, publish and commit one batch if it was fetched under the current assignment (else leave it);
        whether its offsets were committed (True when there was nothing to commit)."""
        if not self.assignment.current(batch.generation):
            await self._leave(batch)
            return True
        return await self._produce(await self.hooks.process(batch.fetched), batch.fetched)

    async def _leave(self, batch: Batch) -> None:
        log.info("%s: %d records fetched before a rebalance left to their owners", self.runtime.stage, batch.size)
        await self.hooks.on_handed_over(batch.records())

    async def _settle(self) -> None:
        """Wait for the batch in flight to be published and committed (see ``pipeline.Assignment``), at most
        ``handover_wait_s``: a batch slower than that is replayed by the next owner, as at-least-once allows."""
        if self._idle.is_set():
            return
        assert self.pipeline is not None  # only a pipelined loop's Assignment settles
        started = time.monotonic()
        stage = self.runtime.stage
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self.pipeline.handover_wait_s)
        except TimeoutError:
            wait_s = self.pipeline.handover_wait_s
            log.warning("%s: partitions revoked while a batch ran over %.0f s; its owner replays it", stage, wait_s)
            return
        if not self._settled:  # its commit was refused (the group moved on) or it failed: the owner replays it
            self.counts["batches_unsettled_on_revoke"] += 1
            log.warning("%s: the batch in flight finished but was not committed; its owner replays it", stage)
            return
        self.counts["batches_settled_on_revoke"] += 1
        log.info("%s: the batch in flight settled in %.2f s before partitions moved", stage, time.monotonic() - started)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._loop._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._loop._assigned(set(assigned))
