"""What a sink is given: one decoded alert record, when it was published, and where it came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from stream.records import AlertRecord


@dataclass(frozen=True, slots=True)
class Notice:
    record: AlertRecord
    published_ms: int  # the record's own publication time, or (schema version 1) its Kafka timestamp
    source: str  # topic[partition]@offset, for logs

    @property
    def alert_id(self) -> str:
        return self.record.alert.alert_id

    @property
    def idempotency_key(self) -> str:
        """Equal for every delivery of one record (a retry, a replay after a crash), distinct between records of
        one incident: a receiver that dedupes on it sees each update once."""
        alert = self.record.alert
        return f"{alert.alert_id}:{alert.status}:{alert.count}"


class Sink(Protocol):
    """A receiver of alerts. ``deliver`` returns once every notice is acknowledged or refused: the refused ones,
    by index into ``notices``, with the reason (they are dead-lettered). Transient failures are retried inside;
    it raises DeliveryError / DeliveryStopped (stream.notify.http) when it gives up, and then nothing is committed."""

    name: str

    async def deliver(self, notices: Sequence[Notice]) -> dict[int, str]: ...
