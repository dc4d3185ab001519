"""Sending what a loop produces: never commit past a record the broker has not acknowledged (``policy.DELIVERY``).

Two ways, one rule:

* :meth:`Deliveries.send` hands a record to the producer without waiting; the first failure the producer reports is
  kept, and :meth:`Deliveries.confirm` (after a flush) raises it as a :class:`BrokerError` before the loop commits
  or checkpoints (the stream stages, which send every record of a checkpoint interval and confirm once);
* :meth:`Deliveries.publish` sends records and waits for every acknowledgement (the inference worker, the feedback
  service and the notifier, which commit after each batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from stream.errors import BrokerError
from stream.records import Outgoing


class Deliveries:
    def __init__(self, producer: AIOKafkaProducer, stage: str) -> None:
        self.producer = producer
        self.stage = stage
        self._error: BaseException | None = None  # the first record the broker refused after the producer's retries
        self.unflushed = False  # records sent since the last confirm

    async def send(self, out: Outgoing) -> None:
        """Hand ``out`` to the producer; its acknowledgement is checked by ``confirm``."""
        delivery = await self.producer.send(out.topic, out.value, key=out.key, partition=out.partition)
        delivery.add_done_callback(self._on_delivery)  # keeps no reference: memory stays flat between confirms
        self.unflushed = True

    def _on_delivery(self, delivery: asyncio.Future[Any]) -> None:
        if self._error is None and not delivery.cancelled() and delivery.exception() is not None:
            self._error = delivery.exception()

    async def confirm(self) -> None:
        """Flush the producer; BrokerError if any record sent since the start was not delivered."""
        await self.producer.flush()
        self.unflushed = False
        if self._error is not None:
            # confirming now would let the loop commit past it: fail loudly, the restart replays from the last commit
            raise BrokerError(f"{self.stage}: a record was not delivered: {self._error}")

    async def publish(self, outgoing: Iterable[Outgoing]) -> None:
        """Send ``outgoing`` and wait for every acknowledgement; BrokerError (offsets stay uncommitted) if one is
        refused."""
        deliveries = [
            await self.producer.send(out.topic, out.value, key=out.key, partition=out.partition) for out in outgoing
        ]
        try:
            await asyncio.gather(*deliveries)
        except Exception as exc:  # a record refused after the producer's retries: never commit past it
            raise BrokerError(f"{self.stage}: a record was not delivered, offsets stay uncommitted: {exc}") from exc
