"""Pipelined consumption for the loop driver (``ConsumeLoop(..., pipeline=Pipeline(...))``): micro-batches gathered
by one task while another processes the previous ones, the inference worker's shape (its model scores one batch
while the next is fetched).

    fetch task ──(bounded queue of micro-batches: the backpressure)──> process task ──> publish ──(acks)──> commit

* A micro-batch closes at ``max_records`` records or ``max_wait_ms`` after its first, whichever comes first.
* The queue holds at most ``depth`` batches; when processing falls behind, the fetch task waits on the queue and
  stops polling, so memory is bounded by the queue plus the client's fetch buffer.
* Rebalances (``Assignment``): a revocation waits for the batch in flight to be published and committed (at most
  ``handover_wait_s``), and batches fetched under an earlier assignment are left to the partitions' new owners.
  No lock is held across processing, so a revocation never waits on anything but the one batch in flight.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition


@dataclass(frozen=True)
class Pipeline:
    max_records: int  # a micro-batch closes at this many records ...
    max_wait_ms: int  # ... or this long after its first record
    depth: int  # micro-batches gathered ahead of the one being processed
    tick_s: float  # the loop's ``tick`` runs when no batch has come for this long
    handover_wait_s: float  # how long a revocation waits for the batch in flight (within the rebalance timeout)


@dataclass
class Batch:
    """One micro-batch: its records by partition, when its first came, and the assignment they were fetched under."""

    fetched: dict[TopicPartition, list[ConsumerRecord]] = field(default_factory=dict)
    started: float = 0.0  # monotonic time of its first record
    generation: int = 0  # ``Assignment.generation`` when its first record came
    size: int = 0

    def add(self, fetched: Mapping[TopicPartition, Sequence[ConsumerRecord]], generation: int) -> None:
        for tp, records in fetched.items():
            if not records:
                continue
            if not self.size:
                self.started = time.monotonic()
                self.generation = generation
            self.fetched.setdefault(tp, []).extend(records)
            self.size += len(records)

    def records(self) -> list[ConsumerRecord]:
        return [record for records in self.fetched.values() for record in records]

    def waited_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000 if self.size else 0.0


Hook = Callable[[set[TopicPartition]], Awaitable[None]]


class Assignment(ConsumerRebalanceListener):
    """The partitions of the group's latest completed assignment (None before the first), its generation (counted
    here), and the hand-over of revoked partitions.

    On revocation, before the group moves any partition, the batch in flight finishes (``settle``): its records are
    acknowledged and its offsets committed (the generation is still valid then). So the next owner starts from
    there (the inference worker's next owner reads the alerts topic and continues that batch's incidents instead of
    opening them again).

    Any other batch fetched under an earlier assignment is left unprocessed and uncommitted (``current`` says no). A
    new assignment resets every partition's position to its committed offset (aiokafka builds fresh partition
    states), so such records are fetched again by whichever consumer now owns them: nothing is skipped, and no later
    batch commits past records that were left.
    """

    def __init__(
        self,
        settle: Callable[[], Awaitable[None]] | None = None,
        *,
        on_revoke: Hook | None = None,
        on_assign: Hook | None = None,
    ) -> None:
        self.partitions: frozenset[int] | None = None
        self.generation = 0
        self.revoking = False
        self._settle = settle
        self._on_revoke = on_revoke
        self._on_assign = on_assign

    def current(self, generation: int) -> bool:
        """Whether a batch fetched under ``generation`` may be processed and committed now."""
        return not self.revoking and generation == self.generation

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.revoking = True  # first: no other batch starts while the one in flight settles
        if self._settle is not None and revoked:
            await self._settle()
        if self._on_revoke is not None:
            await self._on_revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.partitions = frozenset(tp.partition for tp in assigned)
        self.generation += 1
        self.revoking = False
        if self._on_assign is not None:
            await self._on_assign(set(assigned))
