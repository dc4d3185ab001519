"""One loop's consume -> process -> produce -> commit, the parts every loop shares.

The stream stages, the inference worker, the feedback service and the notifier run their consume loop on the
driver in ``loop.py`` (``ConsumeLoop``), each with its own hooks (the stages checkpoint state every interval and
confirm deliveries then; the inference worker's loop is pipelined, micro-batches scored while the next are fetched;
the feedback service stores records and retrains beside them). All do their I/O and error handling through a
:class:`Runtime`: its dead letters (``DeadLetters``), the
error policy of each place it handles errors (``policy``), its deliveries (``Deliveries``) and its commits
(``commit_offsets``), so that they behave the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer, TopicPartition

from stream.records import Outgoing
from stream.runtime.commit import COMMIT_TIMEOUT_S, Committer, commit_offsets
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.delivery import Deliveries


class Runtime:
    """A stage's dead letters (which name it), deliveries and commits. The producer may come later (``attach``): a
    loop builds its dead letters before it connects (and its processing is tested without a broker)."""

    def __init__(
        self,
        dead_letters: DeadLetters,
        producer: AIOKafkaProducer | None = None,
        *,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> None:
        self.stage = dead_letters.stage
        self.dead_letters = dead_letters
        self._deliveries = Deliveries(producer, self.stage) if producer is not None else None
        self.commit_timeout_s = commit_timeout_s
        self.commits_skipped = 0

    def attach(self, producer: AIOKafkaProducer) -> None:
        """Produce through ``producer`` from now on."""
        self._deliveries = Deliveries(producer, self.stage)

    @property
    def deliveries(self) -> Deliveries:
        if self._deliveries is None:
            raise RuntimeError(f"{self.stage}: the runtime has no producer yet (attach one)")
        return self._deliveries

    async def send(self, out: Outgoing) -> None:
        await self.deliveries.send(out)

    async def confirm(self) -> None:
        await self.deliveries.confirm()

    async def publish(self, outgoing: Iterable[Outgoing]) -> None:
        await self.deliveries.publish(outgoing)

    async def commit(self, consumer: Committer, offsets: dict[TopicPartition, int]) -> bool:
        """Commit ``offsets`` (see ``commit_offsets``); whether they were committed."""
        committed = await commit_offsets(consumer, offsets, self.stage, self.commit_timeout_s)
        self.commits_skipped += not committed
        return committed
