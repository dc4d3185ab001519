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

Not on this driver: the inference worker (``stream.inference.worker``). Its consume loop is two tasks joined by a
bounded queue: the fetch task polls and gathers micro-batches while the model task scores the previous ones on the
model thread (backpressure: the fetch task waits on the full queue), and a revocation settles the batch in flight
without a lock (``Assignment``: it waits for the model task's batch, at most ``HANDOVER_WAIT_S``, and leaves
batches fetched under an earlier assignment to their new owners). This driver's loop polls, processes and commits
one batch at a time under one lock; moving the worker onto it would either stop fetching while the model scores
(no overlap, a different throughput) or hold the rebalance lock across a model call. It shares the runtime's parts
instead (``Runtime.publish``, ``Runtime.commit_past``, ``retry.retrying`` for SCORING).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from stream.records import Outgoing
from stream.runtime.commit import offsets_after
from stream.runtime.dead_letters import Position
from stream.runtime.runtime import Runtime

log = logging.getLogger(__name__)

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord]]


class Commit(enum.Enum):
    EACH_BATCH = "each-batch"  # publish a batch's records, await every ack, commit past the batch
    AT_CHECKPOINT = "at-checkpoint"  # send without waiting; confirm and commit when the loop says (and on revoke/stop)


class StopLoop(Exception):
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
        """After each poll's batch is produced (and, each batch, committed), with records or without: timers."""
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
    ) -> None:
        self.consumer = consumer
        self.runtime = runtime
        self.hooks = hooks
        self.mode = commit
        self.poll_ms = poll_ms
        self.max_records = max_records
        self.lock = asyncio.Lock()  # the rebalance listener runs in another task: never interleave with a batch
        self.pending: dict[TopicPartition, int] = {}  # processed and produced for, not yet committed

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to subscribe with: revoked partitions' offsets committed first, under the lock."""
        return _Listener(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` (or ``StopLoop``); at the end, commit what is pending (``AT_CHECKPOINT``)."""
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
                        await self._produce(step)
                    await self.hooks.tick()
        finally:
            if self.mode is Commit.AT_CHECKPOINT:
                async with self.lock:
                    await self.commit()

    async def _produce(self, step: Step) -> None:
        if self.mode is Commit.EACH_BATCH:
            await self.runtime.publish(step.outgoing)  # BrokerError if one is refused: nothing committed
            self._record(step.offsets)
            await self.commit()
            return
        for out in step.outgoing:
            await self.runtime.send(out)
        self._record(step.offsets)

    def _record(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.pending[tp] = max(self.pending.get(tp, 0), offset)

    async def commit(self, only: set[TopicPartition] | None = None) -> bool:
        """Commit the pending offsets (of ``only``'s partitions, if given); call with the lock held. In
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


class _Listener(ConsumerRebalanceListener):
    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._loop._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._loop._assigned(set(assigned))
